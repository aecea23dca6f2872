"""Environments: the factory every env config goes through, and wm's own envs (registered on import)."""

from wm.envs.factory import EnvConfig, episode_seed, make_env, make_vec_env

__all__ = ["EnvConfig", "episode_seed", "make_env", "make_vec_env"]
