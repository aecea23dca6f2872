"""What every world model shares: which loop runs it and the update it makes."""

from __future__ import annotations

import torch


class WorldModel(torch.nn.Module):
    """A learned model of the environment.

    Online models (``loop = "online"``) are built as ``cls(cfg, obs_space=, act_space=, device=)`` and have
    ``train_step(replay, step) -> dict`` (one update, keys "model/..."); ``cfg.update`` is their Schedule.
    Supervised models (``loop = "supervised"``) are built as ``cls(cfg, data=, device=)`` and have
    ``train_step(step)``, ``evaluate()`` and optionally ``artifacts(out_dir, logger)``.
    """

    loop = "online"
