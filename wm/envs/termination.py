"""Known termination functions, for model rollouts (as in MBPO: not learned where the true one is known).

Each takes batched tensors (obs, action, next_obs) of shape (B, ...) and returns a bool tensor (B,) that is
True where ``next_obs`` is terminal. They mirror the gymnasium v5 MuJoCo envs' own conditions on the
observation (positions without the x coordinate, then velocities clipped to +-10).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Termination = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def never(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


def inverted_pendulum(obs, action, next_obs):
    """InvertedPendulum-v5: the pole angle (obs[1]) leaves [-0.2, 0.2], or the state is not finite."""
    return ~torch.isfinite(next_obs).all(-1) | (next_obs[:, 1].abs() > 0.2)


def hopper(obs, action, next_obs):
    """Hopper-v5 unhealthy: z <= 0.7, |angle| >= 0.2, or any of obs[1:] outside (-100, 100)."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (z > 0.7) & (angle > -0.2) & (angle < 0.2) & (next_obs[:, 1:].abs() < 100).all(-1)
    return ~healthy


def walker2d(obs, action, next_obs):
    """Walker2d-v5 unhealthy: z outside (0.8, 2.0) or the torso angle outside (-1, 1)."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


FUNCTIONS: dict[str, Termination] = {
    "never": never,
    "inverted_pendulum": inverted_pendulum,
    "hopper": hopper,
    "walker2d": walker2d,
    "halfcheetah": never,
}
# gymnasium ids (version dropped) -> function name
BY_ENV_ID = {"InvertedPendulum": "inverted_pendulum", "Hopper": "hopper", "Walker2d": "walker2d",
             "HalfCheetah": "halfcheetah"}


def resolve_name(name: str) -> str | None:
    """A function name, or a gymnasium id such as 'Hopper-v5', to a key of FUNCTIONS (None if unknown)."""
    if name in FUNCTIONS:
        return name
    return BY_ENV_ID.get(name.split("-v")[0])


def get(name: str) -> Termination:
    key = resolve_name(name)
    if key is None:
        raise KeyError(name)
    return FUNCTIONS[key]
