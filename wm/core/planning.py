"""The cross-entropy method over action sequences, for any model that can score them (PlaNet's latent planner,
wm/agents/cem.py; planning over learned chemistry dynamics, wm/models/causal.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


@torch.no_grad()
def cem_search(score: Callable[[torch.Tensor], torch.Tensor], n: int, act_dim: int, discrete: bool, cfg,
               device: Any = "cpu") -> torch.Tensor:
    """The cross-entropy method for n problems at once: ``score`` maps (n * candidates, horizon, act_dim)
    action sequences (one-hot rows when ``discrete``, else in [-1, 1]), candidates of problem i in rows
    i * candidates ..., to (n * candidates,) returns. ``cfg`` has horizon, candidates, iterations, top_k and
    smoothing (discrete). Returns (n, act_dim): the first step of the final belief (its mode, one-hot, or its
    mean)."""
    A, H, C, device = act_dim, cfg.horizon, cfg.candidates, torch.device(device)
    if discrete:
        probs = torch.full((n, H, A), 1.0 / A, device=device)
    else:
        mean = torch.zeros(n, H, A, device=device)
        std = torch.ones(n, H, A, device=device)
    for _ in range(cfg.iterations):
        if discrete:
            idx = torch.multinomial(probs.reshape(-1, A), C, replacement=True)  # (n*H, C)
            idx = idx.reshape(n, H, C).permute(0, 2, 1)  # (n, C, H)
            acts = F.one_hot(idx, A).float()
        else:
            acts = (mean[:, None] + std[:, None] * torch.randn(n, C, H, A, device=device)).clamp(-1, 1)
        ret = score(acts.reshape(n * C, H, A)).reshape(n, C)
        top = ret.topk(cfg.top_k, dim=1).indices  # (n, k)
        elite = torch.gather(acts, 1, top[:, :, None, None].expand(-1, -1, H, A))  # (n, k, H, A)
        if discrete:
            probs = (1 - cfg.smoothing) * elite.mean(1) + cfg.smoothing / A
        else:
            mean, std = elite.mean(1), elite.std(1, unbiased=False).clamp(min=1e-3)
    if discrete:
        return F.one_hot(probs[:, 0].argmax(-1), A).float()
    return mean[:, 0]
