"""What every agent shares: acting on a batch of envs and improving from the replay."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class Agent(torch.nn.Module):
    """Chooses actions for a batch of envs and learns.

    Built as ``cls(cfg, obs_space=, act_space=, model=, device=)``; ``cfg.update`` (a Schedule) says when
    ``train_step`` runs and ``cfg.prefill`` how many env steps are taken uniformly at random first.
    The loop keeps ``env_step`` current (real env steps so far), e.g. for exploration schedules.
    ``state_dict()`` must hold everything needed to resume: networks, optimizers, counters.
    """

    action_kinds: tuple[str, ...] = ("discrete", "continuous")

    def __init__(self) -> None:
        super().__init__()
        self.env_step = 0

    def initial_state(self, n: int) -> Any:
        """Per-env recurrent policy state; None for memoryless agents."""
        return None

    def act(self, obs: np.ndarray, state: Any, is_first: np.ndarray, explore: bool) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def train_step(self, replay, step: int) -> dict[str, float]:
        raise NotImplementedError

    def after_model_update(self, replay, step: int) -> dict[str, float]:
        """Called by the loop right after each world-model ``train_step`` (e.g. MBPO's rollouts); stats."""
        return {}
