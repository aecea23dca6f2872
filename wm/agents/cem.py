"""PlaNet's planner: the cross-entropy method over action sequences in the RSSM's latent space.

At every env step, for each env: filter the posterior with the new observation, then for `iterations`
rounds sample `candidates` action sequences of length `horizon` from the current belief (a Gaussian per
step for continuous actions, a categorical per step for discrete ones), roll them through the model's
prior, score them by the predicted rewards weighted by the predicted probability of still being alive,
and refit the belief to the `top_k` best. The first step of the final belief is executed (its mean, or its
most likely action). There is nothing to learn here: the world model trains itself (model.train_step).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from wm.agents.base import Agent
from wm.config import param, require
from wm.core.planning import cem_search
from wm.core.schedule import Schedule
from wm.models.rssm import RSSM


class CEM(Agent):
    action_kinds = ("discrete", "continuous")
    requires_model = ("rssm",)  # checked by wm.validate before anything is built
    dict_obs = True  # through the model: its encoder takes Dict observations

    @dataclass
    class Config:
        name: str = param("cem", free="the option's name")
        update: Schedule = field(default_factory=lambda: Schedule(every=1000000000, updates=0, start=0))
        prefill: int = param(500, ge=0)
        horizon: int = param(10, gt=0)
        candidates: int = param(100, gt=0)
        iterations: int = param(4, gt=0)
        top_k: int = param(10, gt=0)
        gamma: float = param(0.99, ge=0, le=1)
        explore_noise: float = param(0.3, ge=0)  # continuous: Gaussian noise on the executed action when exploring
        explore_eps: float = param(0.1, ge=0, le=1)  # discrete: chance of a uniform random action when exploring
        smoothing: float = param(0.05, ge=0, le=1)  # discrete: uniform mix into each refitted categorical

        def check(self) -> None:
            require(self.top_k <= self.candidates, "top_k",
                    f"must be <= candidates={self.candidates} (got {self.top_k})")

    def __init__(self, cfg: Config, obs_space: gym.Space, act_space: gym.Space, model: RSSM | None = None,
                 device: Any = "cpu"):
        super().__init__()
        if model is None or not isinstance(model, RSSM):
            raise ValueError("agent=cem plans in a latent model and needs model=rssm")
        self.cfg = cfg
        self.__dict__["model"] = model
        self.device = torch.device(device)
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.act_dim = model.act_dim
        if not self.discrete:
            self.low = torch.as_tensor(act_space.low, dtype=torch.float32, device=self.device)
            self.high = torch.as_tensor(act_space.high, dtype=torch.float32, device=self.device)

    def initial_state(self, n: int):
        return None

    @torch.no_grad()
    def score(self, start: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """start: states (N, ...); actions (N, H, A) internal actions -> (N,) predicted discounted return."""
        m, state = self.model, start
        total = torch.zeros(actions.shape[0], device=self.device)
        alive = torch.ones_like(total)
        for t in range(actions.shape[1]):
            state = m.img_step(state, actions[:, t])
            f = m.feat(state)
            total += alive * self.cfg.gamma**t * m.reward(f).mean()
            alive = alive * m.cont(f).probs
        return total

    @torch.no_grad()
    def plan(self, latent: dict[str, torch.Tensor]) -> torch.Tensor:
        """latent: (n, ...) posterior states -> (n, A) internal first actions."""
        C = self.cfg.candidates
        start = {k: v.repeat_interleave(C, 0) for k, v in latent.items() if k in ("deter", "stoch")}
        return cem_search(partial(self.score, start), latent["deter"].shape[0], self.act_dim, self.discrete,
                          self.cfg, self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray, state, is_first: np.ndarray, explore: bool):
        m = self.model
        n = len(is_first)
        if state is None:
            state = (m.initial(n), torch.zeros(n, self.act_dim, device=self.device))
        latent, prev = state
        embed = m.embed(obs)
        latent = m.obs_step(latent, prev, embed, torch.as_tensor(np.asarray(is_first), device=self.device))
        a = self.plan(latent)
        if explore:
            if self.discrete:
                rand = torch.rand(n, device=self.device) < self.cfg.explore_eps
                ra = F.one_hot(torch.randint(0, self.act_dim, (n,), device=self.device), self.act_dim).float()
                a = torch.where(rand[:, None], ra, a)
            else:
                a = (a + self.cfg.explore_noise * torch.randn_like(a)).clamp(-1, 1)
        if self.discrete:
            env_a = a.argmax(-1).cpu().numpy()
        else:
            env_a = (self.low + (a + 1) / 2 * (self.high - self.low)).cpu().numpy()
        return env_a, ({"deter": latent["deter"], "stoch": latent["stoch"]}, a)

    def train_step(self, replay, step: int) -> dict[str, float]:
        return {}

