"""Decision Transformer (Chen et al. 2021): offline RL as sequence modelling.

Each timestep t of an episode gives three tokens, (R_t, s_t, a_t), where R_t = sum_{t' >= t} r_t' is the return
to go; each token is a linear embedding (an embedding table for discrete actions) plus a learned embedding of the
timestep t. A causal transformer (torch's own ``nn.TransformerEncoder`` with a causal mask: a token sees only
those before it) reads the last ``context`` timesteps, 3 x context tokens, and the output at each s_t token
predicts a_t (cross-entropy for discrete actions, MSE on tanh-squashed actions for continuous ones). Training
draws windows of ``context`` steps from the dataset's episodes (shorter at an episode's start: padded on the
left and masked). Evaluation is return-conditioned: R_0 = ``target`` (the paper: a return a bit above the
dataset's best), then R_{t+1} = R_t - r_t after each real step. Returns to go are divided by ``rtg_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from wm.agents.offline import OfflineAgent
from wm.config import param
from wm.core.nets import SavesOptimizers
from wm.core.schedule import cosine_lr


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """R_t = r_t + r_{t+1} + ... + r_{T-1} (undiscounted, as the paper)."""
    return np.cumsum(np.asarray(rewards, np.float64)[::-1])[::-1].copy()


class DecisionTransformer(SavesOptimizers, OfflineAgent):
    # the optimizer and the warm-up schedule resume too (wm.core.nets.SavesOptimizers)
    OPTIMIZERS: ClassVar[dict[str, str]] = {"_opt": "opt", "_sched": "sched"}

    @dataclass
    class Config:
        name: str = param("decision_transformer", free="the option's name")
        context: int = param(20, gt=0)  # K timesteps (3K tokens); the paper: 20 (MuJoCo), 30 (Atari)
        embed: int = param(128, gt=0)
        layers: int = param(3, gt=0)
        heads: int = param(1, gt=0)
        dropout: float = param(0.1, ge=0, lt=1)
        lr: float = param(1e-4, gt=0)
        weight_decay: float = param(1e-4, ge=0)
        warmup: int = param(10000, ge=0)  # linear learning-rate warm-up steps
        lr_decay_steps: int = param(0, ge=0)  # cosine decay of lr to 0 over this many steps (0 = constant lr)
        batch: int = param(64, gt=0)
        grad_clip: float = param(0.25, gt=0)
        rtg_scale: float = param(1000.0, gt=0)  # returns to go are divided by this
        # evaluation targets (returns to go at t = 0); the first is the one logged as eval/return_mean
        targets: list[float] = param([3600.0], nonempty=True, free="any returns")
        max_timestep: int = param(1000, gt=0)  # size of the timestep embedding (longer episodes: clamped)

        def check(self) -> None:
            from wm.config import require

            require(self.embed % self.heads == 0, "embed", f"must be divisible by heads={self.heads} "
                    f"(got {self.embed})")

    def __init__(self, cfg: Config, data, device: Any = "cpu", **kwargs: Any):
        super().__init__(data, device, **kwargs)
        self.cfg = cfg
        c, h = cfg, cfg.embed
        self.embed_t = nn.Embedding(c.max_timestep, h)
        self.embed_r = nn.Linear(1, h)
        self.embed_s = nn.Linear(self.obs_dim, h)
        self.embed_a = nn.Embedding(self.act_dim, h) if self.discrete else nn.Linear(self.act_dim, h)
        self.norm = nn.LayerNorm(h)
        layer = nn.TransformerEncoderLayer(h, c.heads, 4 * h, c.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, self.act_dim))
        self.target = c.targets[0]
        self.to(self.device)
        self.opt = torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / max(1, c.warmup)) * cosine_lr(1.0, s, c.lr_decay_steps))
        # the dataset as flat arrays with each step's episode and timestep (windows never cross episodes)
        eps = data.episodes
        self.obs = np.concatenate([ep["observations"][:-1] for ep in eps]).reshape(-1, self.obs_dim).astype(np.float32)
        self.actions = np.concatenate([ep["actions"] for ep in eps])
        self.rtg = np.concatenate([returns_to_go(ep["rewards"]) for ep in eps]).astype(np.float32)
        self.timestep = np.concatenate([np.arange(len(ep["rewards"])) for ep in eps])
        lengths = [len(ep["rewards"]) for ep in eps]
        self.start = np.repeat(np.cumsum([0, *lengths])[:-1], lengths)  # each step's episode's first step
        mean, std = self.obs.mean(0), self.obs.std(0) + 1e-6
        self.register_buffer("obs_mean", torch.as_tensor(mean, device=self.device))
        self.register_buffer("obs_std", torch.as_tensor(std, device=self.device))

    # ---- the sequence model -----------------------------------------------------------------------------------
    def forward(self, rtg, obs, actions, timestep, mask) -> torch.Tensor:
        """rtg (B, K), obs (B, K, D), actions (B, K) or (B, K, A), timestep (B, K), mask (B, K) True = real step.
        Returns the action predictions at the state tokens (B, K, act_dim)."""
        B, K = rtg.shape
        t = self.embed_t(timestep.clamp(max=self.cfg.max_timestep - 1))
        s = self.embed_s((obs - self.obs_mean) / self.obs_std) + t
        r = self.embed_r(rtg.unsqueeze(-1) / self.cfg.rtg_scale) + t
        a = self.embed_a(actions.long() if self.discrete else actions) + t
        tokens = self.norm(torch.stack([r, s, a], 2).reshape(B, 3 * K, -1))  # R_1 s_1 a_1 R_2 s_2 a_2 ...
        attn = nn.Transformer.generate_square_subsequent_mask(3 * K, device=tokens.device)  # -inf above the diagonal
        if not bool(mask.all()):  # left padding: no real token attends to it; a padded one only to itself
            pad = ~mask.repeat_interleave(3, 1)  # (B, 3K)
            attn = attn.expand(B, -1, -1).masked_fill(pad[:, None, :], float("-inf"))
            eye = torch.eye(3 * K, dtype=torch.bool, device=tokens.device)
            attn = attn.masked_fill(pad[:, :, None] & eye, 0.0).repeat_interleave(self.cfg.heads, 0)
        out = self.transformer(tokens, mask=attn)
        return self.head(out.reshape(B, K, 3, -1)[:, :, 1])  # the outputs at s_t predict a_t

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """``batch`` windows of up to ``context`` steps ending at uniformly drawn dataset steps."""
        K, rng = self.cfg.context, self.rng(step)
        end = rng.integers(len(self.obs), size=self.cfg.batch)  # the last step of each window
        idx = end[:, None] - np.arange(K)[::-1]  # (B, K), oldest first
        mask = idx >= self.start[end][:, None]  # steps before the episode's start are padding
        idx = np.where(mask, idx, end[:, None])
        target = self.action_target(self.actions[idx])  # class indices, or actions scaled into [-1, 1]
        rtg, obs, timestep, mask = (torch.as_tensor(x, device=self.device) for x in
                                    (self.rtg[idx], self.obs[idx], self.timestep[idx], mask))
        return rtg, obs, target, timestep, mask, target  # the action tokens are the targets themselves

    def train_step(self, step: int) -> dict[str, float]:
        self.train()
        rtg, obs, actions, timestep, mask, target = self.batch(step)
        pred = self.forward(rtg, obs, actions, timestep, mask)
        loss = (self.action_loss(pred, target) * mask.reshape(-1)).sum() / mask.sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        return {"train/loss": loss.item(), "train/lr": self.sched.get_last_lr()[0]}

    # ---- acting: return-conditioned ------------------------------------------------------------------------------
    def initial_state(self, n: int) -> dict[str, Any]:
        return {"target": np.full(n, self.target, np.float32), "rtg": [], "obs": [], "actions": [], "t": 0}

    def act(self, obs: np.ndarray, state: dict, is_first: np.ndarray, explore: bool):
        """The next action of each env given its history (the last ``context`` steps) and its return to go."""
        self.eval()
        n, K = len(obs), self.cfg.context
        state["rtg"].append(state["target"].copy())
        state["obs"].append(np.asarray(obs, np.float32).reshape(n, -1))
        state["actions"].append(np.zeros((n,) if self.discrete else (n, self.act_dim), np.float32))  # a_t unknown
        hist = {k: np.stack(state[k][-K:], 1) for k in ("rtg", "obs", "actions")}
        L, t0 = hist["rtg"].shape[1], state["t"] + 1 - min(state["t"] + 1, K)
        with torch.no_grad():
            pred = self.forward(torch.as_tensor(hist["rtg"], device=self.device),
                                torch.as_tensor(hist["obs"], device=self.device),
                                torch.as_tensor(hist["actions"], device=self.device),
                                torch.as_tensor(np.arange(t0, t0 + L)[None].repeat(n, 0), device=self.device),
                                torch.ones(n, L, dtype=torch.bool, device=self.device))[:, -1]
        action = self.to_env(pred)
        state["actions"][-1] = action.astype(np.float32) if self.discrete else np.tanh(
            pred.cpu().numpy()).astype(np.float32)
        state["t"] += 1
        return action, state

    def observe_reward(self, state: dict, reward: np.ndarray) -> dict:
        state["target"] = state["target"] - np.asarray(reward, np.float32)
        return state

    def evaluate(self) -> dict[str, float]:
        """One evaluation per target return; the first target's is logged as eval/return_mean."""
        out, first = {}, None
        for target in self.cfg.targets:
            self.target = target  # the return to go every eval episode starts from
            res = super().evaluate()
            first = first or res
            out[f"eval/return_at_target_{target:g}"] = res["eval/return_mean"]
        self.target = self.cfg.targets[0]
        return {**first, **out}
