"""Dreamer actor-critic learned in imagination on top of wm.models.rssm.RSSM.

One update after each world-model update (``after_model_update``: the model's schedule is the only one)
starts imagined rollouts of `horizon` steps from the posterior states the model offers (``RSSM.posteriors``:
its latest training batch, B*L starts), computes lambda-returns from predicted rewards, continues and the
(slow) critic, then updates
- the actor: REINFORCE with advantages normalised by the 5-95 percentile return range (DreamerV3) for
  discrete actions, or backpropagation through the learned dynamics (DreamerV1) for continuous ones
  (`actor_grad`), plus an entropy bonus. In dynamics mode the lambda-returns the actor maximises are
  bootstrapped from critic values that keep their graph through the imagined features (DreamerV1/V2), so the
  critic's judgement of where the actions lead reaches the actor; only the actor's optimiser steps on that loss;
- the critic: two-hot symlog regression onto the lambda-returns, regularised towards a slow EMA copy.
World-model parameters never receive gradients from here; the imagined trajectory is detached for the
critic and (in REINFORCE mode) for the actor's inputs. Imagined continuous actions are clamped to the action
box [-1, 1] as real ones are, with a straight-through gradient (see `clamp_st`).

Curiosity (``intrinsic=``, wm/intrinsic/latent_disagreement.py): the module keeps the exploration statistics
of the real rows and, for ``intrinsic=disagreement`` (Plan2Explore), trains its latent ensemble on the
posteriors each update and adds ``scale`` x its normalised disagreement to the imagined rewards.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import distributions as td
from torch import nn

from wm.agents.base import Agent
from wm.config import param, require
from wm.core.nets import Polyak, SavesOptimizers, adam, mlp
from wm.models import dists
from wm.models.dists import HEADS
from wm.models.nets import zero_last
from wm.models.rssm import RSSM


def lambda_returns(reward, cont, value, gamma: float, lam: float) -> torch.Tensor:
    """reward, cont: (H, N) for transitions t -> t+1; value: (H+1, N). Returns R_0..R_{H-1} (H, N)."""
    H = reward.shape[0]
    out = [value[-1]]
    for t in reversed(range(H)):
        out.append(reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * out[-1]))
    return torch.stack(out[1:][::-1], 0)


def replay_returns(reward, terminal, last, boot, gamma: float, lam: float) -> torch.Tensor:
    """Lambda-returns along real replay rows (DreamerV3's replay value loss). All (K, N), row t of a sequence:
    the reward and terminal flag that arrived with it, ``last`` (the episode ended at t) and ``boot`` (the
    imagined lambda-return started from t's posterior). Returns R_0..R_{K-2} (K-1, N): real rewards and
    terminals, each step mixing in ``boot`` with weight 1 - lam (all of it where the episode ended)."""
    live = (1.0 - terminal[1:]) * gamma  # (K-1, N): transition t -> t+1
    cont = (1.0 - last[1:]) * lam
    step = reward[1:] + (1.0 - cont) * live * boot[1:]
    out = [boot[-1]]
    for t in reversed(range(len(live))):
        out.append(step[t] + live[t] * cont[t] * out[-1])
    return torch.stack(out[1:][::-1], 0)


def action_dist(out: torch.Tensor, discrete: bool, unimix: float, min_std: float, max_std: float) -> td.Distribution:
    """An actor's raw outputs -> its action distribution: one-hot categorical (straight-through, ``unimix``
    uniform mix) over (..., A) logits, or for continuous actions (..., 2A) -> a Normal with tanh(mean) and a std
    squashed into [min_std, max_std], independent over the A dimensions."""
    if discrete:
        return td.OneHotCategoricalStraightThrough(logits=dists.unimix_logits(out, unimix), validate_args=False)
    mean, std = out.chunk(2, -1)
    std = (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std
    return td.Independent(td.Normal(torch.tanh(mean), std, validate_args=False), 1, validate_args=False)


def pick_action(dist: td.Distribution, discrete: bool, explore: bool) -> torch.Tensor:
    """An action from an actor's distribution (``action_dist``): a sample when exploring, else its mode (the
    likeliest one-hot action, or the mean)."""
    if explore:
        return dist.sample()
    if discrete:
        return torch.nn.functional.one_hot(dist.probs.argmax(-1), dist.probs.shape[-1]).float()
    return dist.mean


def clamp_st(a: torch.Tensor) -> torch.Tensor:
    """Clamp to [-1, 1] in the forward pass, identity gradient in the backward pass (straight-through): the
    model sees the action the env would get, and a sample beyond the box still tells the actor which way
    its return moves (a plain clamp would give those samples zero gradient)."""
    return a + (a.clamp(-1, 1) - a).detach()


class ActorCritic(SavesOptimizers, Agent):
    action_kinds = ("discrete", "continuous")
    requires_model = ("rssm",)  # checked by wm.validate before anything is built
    dict_obs = True  # through the model: its encoder takes Dict observations
    takes_intrinsic = "latent"  # wm.validate passes the latent variant of the intrinsic option (or refuses it)
    OPTIMIZERS: ClassVar[dict[str, str]] = {"_actor_opt": "actor_opt", "_critic_opt": "critic_opt"}

    @dataclass
    class Config:
        name: str = param("actor_critic", free="the option's name")
        prefill: int = param(500, ge=0)  # uniform random env steps before the policy acts
        horizon: int = param(15, gt=0)
        gamma: float = param(0.99, ge=0, le=1)
        lam: float = param(0.95, ge=0, le=1)
        units: int = param(64, gt=0)
        layers: int = param(2, gt=0)
        actor_lr: float = param(3e-4, gt=0)
        critic_lr: float = param(3e-3, gt=0)
        eps: float = param(1e-5, gt=0)
        grad_clip: float = param(100.0, gt=0)
        entropy: float = param(3e-4, ge=0)  # entropy bonus (on normalised advantages)
        unimix: float = param(0.01, ge=0, lt=1)  # discrete actor: uniform mix
        # reinforce | dynamics | auto (reinforce if discrete else dynamics)
        actor_grad: str = param("auto", choices=("auto", "reinforce", "dynamics"))
        critic_head: str = param("symlog_mse", choices=HEADS)  # twohot: DreamerV3 paper; twohot_raw: bins without symlog
        slow_decay: float = param(0.98, ge=0, le=1)  # EMA of the slow critic per update
        slow_reg: float = param(0.1, ge=0)  # weight pulling the critic towards the slow critic (DreamerV3: 1.0)
        slow_target: bool = False  # bootstrap lambda-returns from the slow critic (False: fast, as V3)
        return_norm: bool = True  # divide advantages by max(1, P95 - P5) of returns (EMA)
        norm_decay: float = param(0.99, ge=0, le=1)
        min_std: float = param(0.1, gt=0)  # continuous actor std range
        max_std: float = param(1.0, gt=0)
        starts: int = param(256, ge=0)  # imagination start states per update (0 = all B*L posteriors)
        # weight of the critic's loss on real replay rows (DreamerV3's replay value loss, 0.3): the critic also
        # regresses onto lambda-returns of the real rewards and terminals, bootstrapped from the imagined returns;
        # imagination then starts from the last starts/B rows of each sequence. 0: imagination only (V1-V3 arXiv)
        replay_value: float = param(0.0, ge=0)

        def check(self) -> None:
            require(self.min_std <= self.max_std, "min_std", f"must be <= max_std={self.max_std} "
                    f"(got {self.min_std})")

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_grad(plan.agent, plan.spaces[1])

    @staticmethod
    def check_grad(cfg, act_space: gym.Space) -> str | None:
        if cfg.actor_grad == "dynamics" and isinstance(act_space, gym.spaces.Discrete):
            return "agent.actor_grad=dynamics needs continuous actions (discrete ones: reinforce or auto)"
        return None

    def __init__(self, cfg: Config, obs_space: gym.Space, act_space: gym.Space, model: RSSM | None = None,
                 device: Any = "cpu", intrinsic=None):
        super().__init__()
        if model is None or not isinstance(model, RSSM):
            raise ValueError("agent=actor_critic learns in imagination and needs model=rssm")
        self.cfg = cfg
        self.__dict__["model"] = model  # not a submodule: the model checkpoints itself
        self.device = torch.device(device)
        self.act_space = act_space
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.act_dim = model.act_dim
        self.grad_mode = cfg.actor_grad if cfg.actor_grad != "auto" else ("reinforce" if self.discrete else "dynamics")
        if problem := self.check_grad(cfg, act_space):
            raise ValueError(problem)
        out = self.act_dim if self.discrete else 2 * self.act_dim
        self.actor = mlp(model.feat_dim, out, cfg.units, cfg.layers)
        cbins = dists.head_bins(cfg.critic_head)
        self.critic = zero_last(mlp(model.feat_dim, cbins, cfg.units, cfg.layers))
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.follow = Polyak(self.critic, self.slow_critic)
        self.intrinsic = intrinsic  # a submodule: checkpointed with the agent (ensemble, optimiser, statistics)
        if hasattr(intrinsic, "bind"):
            intrinsic.bind(model)
        self.register_buffer("ret_scale", torch.ones(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.to(self.device)
        self.actor_opt = adam(self.actor.parameters(), cfg.actor_lr, cfg.eps, self.device)
        self.critic_opt = adam(self.critic.parameters(), cfg.critic_lr, cfg.eps, self.device)

    # ----- policy ------------------------------------------------------------------------------------
    def policy(self, feat: torch.Tensor) -> td.Distribution:
        return action_dist(self.actor(feat), self.discrete, self.cfg.unimix, self.cfg.min_std, self.cfg.max_std)

    def value(self, feat: torch.Tensor, slow: bool = False) -> torch.Tensor:
        net = self.slow_critic if slow else self.critic
        return dists.head_dist(net(feat), self.cfg.critic_head).mean()

    def to_env(self, a: torch.Tensor) -> np.ndarray:
        """Internal action (one-hot, or [-1, 1]^A) -> env action."""
        return self.model.actions.decode(a)

    def initial_state(self, n: int):
        return None

    @torch.no_grad()
    def act(self, obs: np.ndarray, state, is_first: np.ndarray, explore: bool):
        m = self.model
        n = len(is_first)
        if state is None:
            state = (m.initial(n), torch.zeros(n, self.act_dim, device=self.device))
        latent, prev = state
        embed = m.embed(obs)
        first = torch.as_tensor(np.asarray(is_first), device=self.device)
        latent = m.obs_step(latent, prev, embed, first)
        a = pick_action(self.policy(m.feat(latent)), self.discrete, explore)
        if not self.discrete:
            a = a.clamp(-1, 1)
        return self.to_env(a), ({"deter": latent["deter"], "stoch": latent["stoch"]}, a)

    # ----- learning in imagination ---------------------------------------------------------------------
    def imagine(self, start: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Roll the actor through the model's prior for `horizon` steps. Returns feats (H+1, N, F), the
        actions the model saw (H, N, A; continuous ones clamped to [-1, 1]) and the policy's samples before
        the clamp (for log-probabilities). In REINFORCE mode nothing here carries gradients; in dynamics mode
        the actions are reparameterised and gradients flow through the (frozen) model into the actor."""
        m = self.model
        state = {"deter": start["deter"], "stoch": start["stoch"]}
        feats, actions, samples = [m.feat(state)], [], []
        grad = self.grad_mode == "dynamics"
        with torch.set_grad_enabled(grad):
            for _ in range(self.cfg.horizon):
                dist = self.policy(feats[-1].detach() if not grad else feats[-1])
                a = dist.rsample() if grad else dist.sample()
                samples.append(a)
                a = a if self.discrete else clamp_st(a)
                state = m.img_step(state, a)
                feats.append(m.feat(state))
                actions.append(a)
        return torch.stack(feats), torch.stack(actions), torch.stack(samples)

    def bootstrap(self, feats: torch.Tensor) -> torch.Tensor:
        """Values (H+1, N) the lambda-returns bootstrap from, by the slow or the fast critic. The critic is
        frozen while they are computed: a gradient through them (dynamics mode: `feats` carry the actor's
        graph) reaches the actor through the features and never lands on the critic's parameters."""
        self.critic.requires_grad_(False)
        try:
            return self.value(feats, slow=self.cfg.slow_target)
        finally:
            self.critic.requires_grad_(True)

    def pick_starts(self, post) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """Imagination starts: `starts` random posteriors of the batch, or with the replay value loss the last
        `tail` = starts/B rows of every sequence (consecutive rows, so real returns can run along them)."""
        c = self.cfg
        B, L = post.cont.shape
        if c.replay_value:
            tail = L if not c.starts else min(L, max(2, c.starts // B))
            start = {k: v[:, -tail:].reshape(B * tail, -1) for k, v in post.states.items() if k in ("deter", "stoch")}
            return start, post.cont[:, -tail:].reshape(-1), tail
        start, cont0 = post.starts()
        if c.starts and c.starts < len(cont0):
            idx = torch.randperm(len(cont0), device=self.device)[: c.starts]
            start, cont0 = {k: v[idx] for k, v in start.items()}, cont0[idx]
        return start, cont0, 0

    def replay_value_loss(self, post, tail: int, imagined: torch.Tensor) -> torch.Tensor:
        """The critic on the last `tail` real rows of each sequence, regressed onto lambda-returns of their real
        rewards and terminals bootstrapped from the imagined returns started there (``imagined``: (B*tail,)).
        Rows where the episode ended carry no loss (their next row belongs to another episode)."""
        c, m = self.cfg, self.model
        B = post.cont.shape[0]
        tm = lambda x: x[:, -tail:].to(self.device).float().transpose(0, 1)  # (tail, B)
        reward, terminal, last = (tm(post.batch[k]) for k in ("reward", "is_terminal", "is_last"))
        feat = m.feat({k: post.states[k][:, -tail:] for k in ("deter", "stoch")}).transpose(0, 1)
        with torch.no_grad():
            boot = imagined.reshape(B, tail).transpose(0, 1)
            target = replay_returns(reward, terminal, last, boot, c.gamma, c.lam)  # (tail-1, B)
            slow = self.value(feat[:-1], slow=True)
        vdist = dists.head_dist(self.critic(feat[:-1]), c.critic_head)
        loss = -vdist.log_prob(target)
        if c.slow_reg:
            loss = loss - c.slow_reg * vdist.log_prob(slow)
        return ((1.0 - last[:-1]) * loss).mean()

    def after_model_update(self, replay, step: int) -> dict[str, float]:
        """One actor-critic update after each world-model update (the model's schedule is the only one)."""
        return self.train_step(replay, step)

    def train_step(self, replay, step: int) -> dict[str, float]:
        m, c = self.model, self.cfg
        explore = self.intrinsic.observe(replay) if self.intrinsic is not None else {}
        post = m.posteriors  # what the model offers: its latest update's sequences and posterior states
        if post is None:  # the model skipped its update (too few rows for one sequence yet)
            return explore
        curious = hasattr(self.intrinsic, "imagined_bonus")
        if curious:
            self.intrinsic.train_on(m, post.states, post.batch)
        start, cont0, tail = self.pick_starts(post)

        m.requires_grad_(False)
        try:
            feats, actions, samples = self.imagine(start)
            reward = m.reward(feats[1:]).mean()  # (H, N)
            cont = m.cont(feats[1:]).probs
            reward_ext = reward
            if curious:  # the bonus of transition t: disagreement about where (feat_t, a_t) leads
                reward = reward + self.intrinsic.imagined_bonus(feats[:-1], actions)
        finally:
            m.requires_grad_(True)
        fd = feats.detach()
        with torch.no_grad():
            slow = self.value(fd, slow=True)  # (H+1, N): the critic regulariser's targets
        vdist = dists.head_dist(self.critic(fd[:-1]), c.critic_head)
        value = vdist.mean()  # (H, N), with grad for the critic loss; detached as the actor's baseline
        boot = self.bootstrap(feats if self.grad_mode == "dynamics" else fd)  # (H+1, N)
        # in dynamics mode the returns carry gradient to the actor through reward, continue and the bootstrap
        # values; every other use (critic target, REINFORCE advantage, normalisation) takes them detached
        returns = lambda_returns(reward, cont, boot, c.gamma, c.lam)  # (H, N)
        with torch.no_grad():
            disc = torch.cat([cont0[None], cont[:-1]], 0) * torch.cat(
                [torch.ones_like(cont0)[None], torch.full_like(cont[:-1], c.gamma)], 0)
            weight = torch.cumprod(disc, 0)  # (H, N): reaching state t at all, discounted
            if c.return_norm:
                r = returns.detach().flatten()
                lo, hi = torch.quantile(r, 0.05), torch.quantile(r, 0.95)
                self.ret_scale.mul_(c.norm_decay).add_((1 - c.norm_decay) * (hi - lo))
            scale = self.ret_scale.clamp(min=1.0) if c.return_norm else torch.ones(())

        # actor
        f0 = feats[:-1]
        policy = self.policy(f0.detach() if self.grad_mode == "reinforce" else f0)
        ent = policy.entropy()
        base = value.detach()
        if self.grad_mode == "reinforce":
            adv = ((returns.detach() - base) / scale)
            logp = policy.log_prob(samples.detach())
            actor_obj = logp * adv
        else:
            actor_obj = returns / scale
        actor_loss = -(weight * (actor_obj + c.entropy * ent)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        agn = nn.utils.clip_grad_norm_(self.actor.parameters(), c.grad_clip)
        self.actor_opt.step()

        # critic
        critic_loss = -vdist.log_prob(returns.detach())
        if c.slow_reg:
            critic_loss = critic_loss - c.slow_reg * vdist.log_prob(slow[:-1])
        critic_loss = (weight * critic_loss).mean()
        if c.replay_value:
            critic_loss = critic_loss + c.replay_value * self.replay_value_loss(post, tail, returns[0].detach())
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        cgn = nn.utils.clip_grad_norm_(self.critic.parameters(), c.grad_clip)
        self.critic_opt.step()
        self.follow(1 - c.slow_decay)
        self.updates += 1
        intrinsic = {**self.intrinsic.stats, **explore} if self.intrinsic is not None else {}
        return {
            **intrinsic,
            "agent/actor_loss": actor_loss.item(),
            "agent/critic_loss": critic_loss.item(),
            "agent/imag_return": returns.mean().item(),
            "agent/imag_reward": reward_ext.mean().item(),  # the model's (extrinsic) reward
            "agent/value": base.mean().item(),
            "agent/entropy": ent.mean().item(),
            "agent/return_scale": float(self.ret_scale),
            "agent/actor_grad_norm": float(agn),
            "agent/critic_grad_norm": float(cgn),
        }

    def artifacts(self, run_dir, logger, step: int) -> None:
        """Called by the loop after each evaluation: the intrinsic module's coverage (and visitation image)."""
        if self.intrinsic is not None:
            self.intrinsic.artifacts(run_dir, logger, step)
