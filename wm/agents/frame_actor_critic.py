"""DIAMOND's actor-critic (Alonso et al. 2024): a policy on frames, trained only inside model=diffusion_world.

Network: a CNN of the current frame (wm.models.nets.ConvEncoder), an LSTM over time, and two linear heads
(policy logits, or a Gaussian's mean and std for continuous actions; a scalar value), one optimiser for all of
it, as in DIAMOND. Acting feeds the real frames through the LSTM (its state resets at each episode start).

One update after each world-model update (``after_model_update``): ``starts`` windows of k real rows are drawn
from the replay; the LSTM is burned in on their frames; then ``horizon`` steps are imagined: the policy samples an
action from its state, the diffusion model samples the next frame, the reward / end model predicts the reward
and the termination probability p, and the LSTM takes the new frame (its state keeps the gradient through the
imagined steps, as DIAMOND's does). Losses, as DIAMOND's:
- lambda-returns G_t from the imagined rewards, continues 1 - p and the (detached) values, gamma 0.985,
  lambda 0.95;
- actor: REINFORCE, -log pi(a_t) (G_t - V_t) (both detached) - ``entropy`` x the policy's entropy;
- critic: (V_t - G_t)^2.
Every term is weighted by the chance of still being in the episode at step t (the cumulative product of the
continues before it, and 0 from a start row that is itself terminal), as the RSSM actor-critic does; DIAMOND
instead resets an imagined episode at a predicted end. Gradients never reach the world model: its outputs are
sampled without a graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from wm.agents.actor_critic import action_dist, lambda_returns, pick_action
from wm.agents.base import Agent
from wm.config import param, require
from wm.core.nets import SavesOptimizers, adam
from wm.models.diffusion_world import DiffusionWorld, to_frames
from wm.models.nets import ConvEncoder

State = tuple[torch.Tensor, torch.Tensor]


class FrameActorCritic(SavesOptimizers, Agent):
    action_kinds = ("discrete", "continuous")
    requires_model = ("diffusion_world",)  # checked by wm.validate before anything is built
    OPTIMIZERS: ClassVar[dict[str, str]] = {"_opt": "opt"}

    @dataclass
    class Config:
        name: str = param("frame_actor_critic", free="the option's name")
        prefill: int = param(1000, ge=0)  # uniform random env steps before the policy acts
        horizon: int = param(15, gt=0)  # imagined steps per update (DIAMOND: 15)
        starts: int = param(32, gt=0)  # imagined trajectories per update (DIAMOND: 32)
        gamma: float = param(0.985, ge=0, le=1)  # DIAMOND's
        lam: float = param(0.95, ge=0, le=1)
        entropy: float = param(1e-3, ge=0)  # DIAMOND: 0.001
        depth: int = param(16, gt=0)  # CNN width (doubling per level)
        hidden: int = param(128, gt=0)  # LSTM width (DIAMOND: 512)
        lr: float = param(1e-4, gt=0)  # DIAMOND's
        eps: float = param(1e-8, gt=0)
        grad_clip: float = param(100.0, gt=0)  # DIAMOND's
        unimix: float = param(0.0, ge=0, lt=1)  # discrete: uniform mix of the policy (DIAMOND: none)
        min_std: float = param(0.1, gt=0)  # continuous actions: the policy's std range
        max_std: float = param(1.0, gt=0)

        def check(self) -> None:
            require(self.min_std <= self.max_std, "min_std", f"must be <= max_std={self.max_std} (got {self.min_std})")

    def __init__(self, cfg: Config, obs_space: gym.Space, act_space: gym.Space, model: DiffusionWorld | None = None,
                 device: Any = "cpu", intrinsic=None):
        super().__init__()
        if not isinstance(model, DiffusionWorld):
            raise TypeError("agent=frame_actor_critic learns in imagination and needs model=diffusion_world")
        self.cfg, self.device = cfg, torch.device(device)
        self.__dict__["model"] = model  # not a submodule: the model checkpoints itself
        self.discrete = model.actions.discrete
        self.encoder = ConvEncoder(model.size, cfg.depth, model.channels)
        self.lstm = nn.LSTMCell(self.encoder.out_dim, cfg.hidden)
        self.actor = nn.Linear(cfg.hidden, model.act_dim * (1 if self.discrete else 2))
        self.critic = nn.Linear(cfg.hidden, 1)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.to(self.device)
        self.opt = adam(self.parameters(), cfg.lr, cfg.eps, self.device)

    # ----- the network -------------------------------------------------------------------------------
    def initial(self, n: int) -> State:
        z = torch.zeros(n, self.cfg.hidden, device=self.device)
        return z, z.clone()

    def observe(self, state: State, frame: torch.Tensor, first: torch.Tensor | None = None) -> State:
        """The LSTM after seeing ``frame`` (N, C, H, W) in [-1, 1] (the ConvEncoder takes [-0.5, 0.5]); rows where
        ``first`` (N,) is true start an episode and forget the state first."""
        if first is not None:
            live = (1.0 - first.float())[:, None]
            state = (state[0] * live, state[1] * live)
        return self.lstm(self.encoder(frame / 2), state)

    def policy(self, h: torch.Tensor):
        c = self.cfg
        return action_dist(self.actor(h), self.discrete, c.unimix, c.min_std, c.max_std)

    # ----- acting ------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, state: State | None, is_first: np.ndarray, explore: bool):
        state = state if state is not None else self.initial(len(obs))
        first = torch.as_tensor(np.asarray(is_first, bool), device=self.device)
        h, c = self.observe(state, to_frames(torch.as_tensor(np.asarray(obs)), self.device), first)
        return self.model.actions.decode(pick_action(self.policy(h), self.discrete, explore)), (h, c)

    # ----- learning in imagination ---------------------------------------------------------------------
    def after_model_update(self, replay, step: int) -> dict[str, float]:
        return self.train_step(replay, step)

    def train_step(self, replay, step: int) -> dict[str, float]:
        c, m = self.cfg, self.model
        if m.updates == 0:  # the model skipped its first updates (too few rows yet): nothing to imagine with
            return {}
        start = m.start_states(replay, c.starts)
        frames, actions, rstate = start["frames"], start["actions"], start["reward_state"]
        first = start["rows"]["is_first"].to(self.device)
        with torch.no_grad():  # burn-in on the real frames, as acting saw them
            state = self.initial(c.starts)
            for t in range(m.k):
                state = self.observe(state, frames[:, t], first[:, t])
        logp, ent, values, rewards, conts = [], [], [], [], []
        for _ in range(c.horizon):
            dist = self.policy(state[0])
            a = dist.sample()
            logp.append(dist.log_prob(a))
            ent.append(dist.entropy())
            values.append(self.critic(state[0]).squeeze(-1))
            a = a if self.discrete else a.clamp(-1, 1)
            nxt, reward, p_end, rstate = m.imagine_step(frames, actions, a, rstate)
            frames = torch.cat([frames[:, 1:], nxt[:, None]], 1)
            actions = torch.cat([actions[:, 1:], a[:, None]], 1)
            state = self.observe(state, nxt)
            rewards.append(reward)
            conts.append(1.0 - p_end)
        values.append(self.critic(state[0]).squeeze(-1))
        value, reward, cont = torch.stack(values), torch.stack(rewards), torch.stack(conts)  # (H+1, N), (H, N), (H, N)
        with torch.no_grad():
            returns = lambda_returns(reward, cont, value.detach(), c.gamma, c.lam)  # (H, N)
            alive0 = 1.0 - start["rows"]["is_terminal"][:, -1].to(self.device).float()
            weight = torch.cumprod(torch.cat([alive0[None], cont[:-1]], 0), 0)
            adv = returns - value[:-1]
        logp_t, ent_t = torch.stack(logp), torch.stack(ent)
        actor_loss = -(weight * (logp_t * adv + c.entropy * ent_t)).mean()
        critic_loss = (weight * (value[:-1] - returns).square()).mean()
        self.opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        gn = nn.utils.clip_grad_norm_(self.parameters(), c.grad_clip)
        self.opt.step()
        self.updates += 1
        return {"agent/actor_loss": actor_loss.item(), "agent/critic_loss": critic_loss.item(),
                "agent/imag_return": returns.mean().item(), "agent/imag_reward": reward.mean().item(),
                "agent/imag_end": 1 - cont.mean().item(), "agent/value": value.mean().item(),
                "agent/entropy": ent_t.mean().item(), "agent/grad_norm": gn.item()}
