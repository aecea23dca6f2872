"""Environments: the factory every env config goes through, and wm's own envs (registered on import)."""

from wm.envs.factory import EnvConfig, make_env, make_vec_env
from wm.envs.grid import register_envs

register_envs()

__all__ = ["EnvConfig", "make_env", "make_vec_env"]
