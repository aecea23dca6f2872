"""Environments: the factory every env config goes through, and wm's own envs (registered on import)."""

import gymnasium as gym

from wm.envs.factory import EnvConfig, make_env, make_vec_env
from wm.envs.grid import register_envs

register_envs()
if "wm/Chemistry-v0" not in gym.registry:
    gym.register(id="wm/Chemistry-v0", entry_point="wm.envs.chemistry:Chemistry")

__all__ = ["EnvConfig", "make_env", "make_vec_env"]
