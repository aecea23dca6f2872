"""wm: world models and model-based RL in one Hydra-configured framework."""

__version__ = "0.1.0"
