"""wm's own envs, registered with gymnasium on import."""

from wm.envs.grid import register_envs

register_envs()
