"""What kind of actions an env takes, for validating agent/env combinations."""

from __future__ import annotations

import gymnasium as gym


def action_kind(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box):
        return "continuous"
    return type(space).__name__
