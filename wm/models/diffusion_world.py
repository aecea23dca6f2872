"""model=diffusion_world: DIAMOND's world model (Alonso et al. 2024), for an agent that learns in imagination.

Two parts, trained from the replay by the online loop, each with its own optimiser:
- the EDM diffusion model of the next frame (wm.models.diffusion.FramePredictor: the same denoiser, noise
  levels and sampler as model=diffusion), conditioned on the last k frames and the k actions that followed them;
- a reward / termination model (``RewardEndModel``): a CNN of each (previous frame, frame) pair plus the action
  between them, an LSTM over time, and two heads: the reward received on arriving at the frame (one of the
  scalar heads of wm.models.dists) and whether the episode terminated there (Bernoulli logit). DIAMOND's is the
  same shape (CNN + LSTM on frame pairs and actions); it classifies the reward's sign because Atari rewards are
  clipped, a regression head here keeps other reward scales.

Replay rows follow the DreamerV3 format (see rssm.py): row t holds obs_t, the action that led to obs_t, the
reward on arriving at obs_t and is_terminal_t. A denoiser window over rows t-k..t therefore conditions on the
frames of rows t-k..t-1 and the actions of rows t-k+1..t and predicts obs_t. Context rows from before an episode's
start are blanked (frame and action zero), as DIAMOND pads the first steps of an episode: ``episode_only``. A
window whose target row is itself an episode start (its context belongs to another episode) carries no loss.

Imagination (used by agent=frame_actor_critic): ``start_states`` draws windows of k real rows from the replay and
burns the reward model's LSTM in on them; ``imagine_step`` samples the next frame with ``denoising_steps``
Euler steps, then predicts its reward and termination.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import check_tree, param
from wm.core.nets import SavesOptimizers, adam
from wm.core.schedule import Schedule
from wm.models import dists
from wm.models.base import WorldModel
from wm.models.diffusion import EDMConfig, FramePredictor
from wm.models.dists import HEADS
from wm.models.nets import ActionCoder, ConvEncoder, zero_last


def episode_only(is_first: torch.Tensor) -> torch.Tensor:
    """(B, T) bool is_first of a window -> (B, T) float: 1 for rows of the window's last episode, 0 for rows
    before its start (a row is kept when no later row of the window starts an episode)."""
    later = is_first[:, 1:].flip(1).cumsum(1).flip(1) > 0  # an episode starts after row t
    return torch.cat([~later, torch.ones_like(is_first[:, :1])], 1).float()


def to_frames(obs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 env images (..., H, W, C) -> floats (..., C, H, W) in [-1, 1]."""
    return obs.to(device, torch.float32).div(127.5).sub(1.0).movedim(-1, -3)


class RewardEndModel(nn.Module):
    """(previous frame, action, frame) per step -> LSTM -> reward and termination logit (module docstring)."""

    def __init__(self, size: int, channels: int, act_dim: int, depth: int, hidden: int, head: str):
        super().__init__()
        self.encoder = ConvEncoder(size, depth, 2 * channels)
        self.act_emb = nn.Linear(act_dim, hidden)
        self.inp = nn.Linear(self.encoder.out_dim, hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.reward = zero_last(nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dists.head_bins(head))))
        self.end = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.hidden, self.head = hidden, head

    def initial(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(n, self.hidden, device=device)
        return z, z.clone()

    def step(self, state, prev: torch.Tensor, action: torch.Tensor, frame: torch.Tensor):
        """One step: frames (N, C, H, W) in [-1, 1] (the ConvEncoder takes them halved, in [-0.5, 0.5]), action
        (N, A) -> (reward head output (N, bins), end logit (N,), new state)."""
        x = F.silu(self.inp(self.encoder(torch.cat([prev, frame], 1) / 2)) + self.act_emb(action))
        h, c = self.lstm(x, state)
        return self.reward(h), self.end(h).squeeze(-1), (h, c)

    def unroll(self, frames: torch.Tensor, actions: torch.Tensor, first: torch.Tensor):
        """Every transition of sequences (frames (N, T, C, H, W), actions (N, T, A), first (N, T) float) from zero
        state: row t's is (frame t-1, action t, frame t). A row that starts an episode crosses two episodes: the
        state is zeroed after it, so the next row begins afresh. Returns the reward head outputs (T-1, N, bins),
        end logits (T-1, N) and the final state."""
        state, outs, logits = self.initial(len(frames), frames.device), [], []
        for t in range(1, frames.shape[1]):
            out, logit, (h, c) = self.step(state, frames[:, t - 1], actions[:, t], frames[:, t])
            live = (1.0 - first[:, t])[:, None]
            state = (h * live, c * live)
            outs.append(out)
            logits.append(logit)
        return torch.stack(outs), torch.stack(logits), state


class DiffusionWorld(SavesOptimizers, WorldModel):
    """model=diffusion_world: the next-frame denoiser and the reward / termination model (module docstring)."""

    loop = "online"
    OPTIMIZERS: ClassVar[dict[str, str]] = {"_denoiser_opt": "denoiser_opt", "_reward_opt": "reward_opt"}

    @dataclass
    class Config(EDMConfig):
        name: str = param("diffusion_world", free="the option's name")
        update: Schedule = field(default_factory=lambda: Schedule(every=4, updates=1, start=1000))
        reward_sequences: int = param(16, gt=0)  # sequences per reward-model update
        reward_length: int = param(16, ge=2)  # rows per sequence (the LSTM starts from zeros at its first row)
        reward_depth: int = param(16, gt=0)  # reward model CNN width (doubling per level)
        reward_hidden: int = param(128, gt=0)  # its LSTM width
        reward_head: str = param("symlog_mse", choices=HEADS)
        reward_lr: float = param(1e-4, gt=0)  # DIAMOND: 1e-4 for every part
        reward_grad_clip: float = param(10.0, gt=0)

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_space(plan.model, plan.spaces[0])

    @staticmethod
    def check_space(cfg: DiffusionWorld.Config, obs: gym.Space) -> str | None:
        if len(obs.shape) != 3 or obs.shape[-1] not in (1, 3) or obs.dtype != np.uint8 or obs.shape[0] != obs.shape[1]:
            return ("model=diffusion_world predicts image frames: use an env with square uint8 (H, W, C) pixel "
                    "observations (e.g. env=cartpole_pixels)")
        size = obs.shape[0]
        if size < 8 or size & (size - 1):
            return f"model=diffusion_world's CNNs halve the frames down to 4x4: their size must be a power of two >= 8 (got {size})"
        return FramePredictor.check_sizes(cfg, size, None)

    def __init__(self, cfg: Config, obs_space: gym.Space, act_space: gym.Space, device: Any = "cpu"):
        super().__init__()
        check_tree(cfg, "model")
        if (problem := self.check_space(cfg, obs_space)) is not None:
            raise ValueError(problem)
        self.cfg, self.device = cfg, torch.device(device)
        self.size, self.channels = obs_space.shape[0], obs_space.shape[-1]
        self.actions = ActionCoder(act_space)
        self.act_dim, self.k = self.actions.dim, cfg.cond_frames
        self.frames = FramePredictor(cfg, self.channels, self.act_dim, self.device)
        self.rewards = RewardEndModel(self.size, self.channels, self.act_dim, cfg.reward_depth, cfg.reward_hidden,
                                      cfg.reward_head)
        self.to(self.device)
        self.reward_opt = adam(self.rewards.parameters(), cfg.reward_lr, 1e-8, self.device)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.last_rows: dict[str, torch.Tensor] | None = None

    @property
    def denoiser_opt(self) -> torch.optim.Optimizer:
        return self.frames.opt

    # ----- inputs ------------------------------------------------------------------------------------
    def window(self, rows: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Replay rows (B, T, ...) -> (frames (B, T, C, H, W), actions (B, T, A)) with the rows before the window's
        last episode start blanked (``episode_only``), and the action of an episode's first row too (none led
        to it)."""
        first = rows["is_first"].to(self.device)
        keep = episode_only(first)
        frames = to_frames(rows["obs"], self.device) * keep[:, :, None, None, None]
        actions = self.actions.encode(rows["action"], self.device) * (keep * ~first)[:, :, None]
        return frames, actions

    # ----- training ----------------------------------------------------------------------------------
    def denoiser_loss(self, replay) -> torch.Tensor | None:
        """EDM's loss on ``batch_size`` windows of k + 1 rows: frames t-k..t-1 and the actions that followed them
        (rows t-k+1..t) -> frame t. None when every window's target starts an episode."""
        rows = replay.sample_sequences(self.cfg.batch_size, self.k + 1)
        frames, actions = self.window(rows)
        valid = ~rows["is_first"][:, -1].to(self.device)
        if not valid.any():
            return None
        return self.frames.denoising_loss(frames[valid, -1], frames[valid, :-1], actions[valid, 1:], None)

    def reward_loss(self, replay) -> tuple[torch.Tensor, dict[str, float]]:
        """The reward / end model on ``reward_sequences`` sequences: row t's transition is (frame t-1, action t,
        frame t) with row t's reward and is_terminal; rows that start an episode carry no loss and reset the LSTM."""
        rows = replay.sample_sequences(self.cfg.reward_sequences, self.cfg.reward_length)
        self.last_rows = {k: v[:4] for k, v in rows.items()}  # for the open-loop strip (``artifacts``)
        frames = to_frames(rows["obs"], self.device)
        actions = self.actions.encode(rows["action"], self.device)
        first = rows["is_first"].to(self.device).float()
        reward, terminal = rows["reward"].to(self.device).float(), rows["is_terminal"].to(self.device).float()
        out, logit, _ = self.rewards.unroll(frames, actions, first)
        tm = lambda x: x[:, 1:].transpose(0, 1)  # rows 1..T-1, time first: (T-1, N)
        w = 1.0 - tm(first)  # an episode's first row has no transition into it
        norm = w.sum().clamp(min=1.0)
        r_loss = -dists.head_dist(out, self.cfg.reward_head).log_prob(tm(reward))
        e_loss = F.binary_cross_entropy_with_logits(logit, tm(terminal), reduction="none")
        rl, el = (r_loss * w).sum() / norm, (e_loss * w).sum() / norm
        return rl + el, {"model/reward_loss": rl.item(), "model/end_loss": el.item()}

    def train_step(self, replay, step: int) -> dict[str, float]:
        """One denoiser and one reward / end model update (skipped, with no stats, while no env holds a full
        reward sequence yet: update.start too early; the agent then skips too, see ``updates``)."""
        t0 = time.perf_counter()
        try:
            rloss, rstats = self.reward_loss(replay)
        except ValueError:
            return {}
        loss = self.denoiser_loss(replay)
        stats: dict[str, float] = {}
        if loss is not None:
            gn, lr = self.frames.optimize(loss, int(self.updates))
            stats.update({"model/denoising_loss": loss.item(), "model/denoiser_grad_norm": gn, "model/lr": lr})
        self.reward_opt.zero_grad(set_to_none=True)
        rloss.backward()
        nn.utils.clip_grad_norm_(self.rewards.parameters(), self.cfg.reward_grad_clip)
        self.reward_opt.step()
        self.updates += 1
        return {**stats, **rstats, "model/updates_per_s": 1.0 / max(time.perf_counter() - t0, 1e-9)}

    # ----- imagination -------------------------------------------------------------------------------
    @torch.no_grad()
    def start_states(self, replay, n: int) -> dict[str, Any]:
        """``n`` windows of k real rows (blanked before an episode start) to imagine from: frames (n, k, C, H, W),
        actions (n, k, A) (row i's action led to frame i), the raw rows, and the reward model's LSTM state
        after the window's transitions (``reward_state``)."""
        rows = replay.sample_sequences(n, self.k)
        frames, actions = self.window(rows)
        _, _, state = self.rewards.unroll(frames, actions, rows["is_first"].to(self.device).float())
        return {"frames": frames, "actions": actions, "rows": rows, "reward_state": state}

    @torch.no_grad()
    def imagine_step(self, frames: torch.Tensor, actions: torch.Tensor, action: torch.Tensor, reward_state,
                     generator: torch.Generator | None = None):
        """One imagined step from the last k ``frames`` (N, k, C, H, W) and the k actions that led to them
        (N, k, A) with the new ``action`` (N, A): the next frame (N, C, H, W), its predicted reward (N,) and
        termination probability (N,), and the reward model's new state. The denoiser conditions on the k frames
        and the actions that followed them: actions[:, 1:] and the new one."""
        follow = torch.cat([actions[:, 1:], action[:, None]], 1)
        nxt = self.frames.sample_next(frames, follow, generator=generator)
        out, logit, state = self.rewards.step(reward_state, frames[:, -1], action, nxt)
        return nxt, dists.head_dist(out, self.cfg.reward_head).mean(), torch.sigmoid(logit), state

    # ----- media -------------------------------------------------------------------------------------
    @torch.no_grad()
    def open_loop(self, rows: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Real vs imagined frames of replay sequences (B, T): the first k real frames, then each next frame sampled
        from the model's own previous ones with the real actions (frames before the sequence's last episode start
        blanked, as the model sees them). Returns uint8 (B, T, C, H, W) twice: real, imagined."""
        frames, actions = self.window(rows)
        window = list(frames[:, : self.k].unbind(1))
        for t in range(self.k, frames.shape[1]):
            window.append(self.frames.sample_next(torch.stack(window[-self.k:], 1), actions[:, t - self.k + 1: t + 1]))
        as_uint8 = lambda x: ((x + 1) * 127.5).round().clamp(0, 255).byte().cpu().numpy()
        return as_uint8(to_frames(rows["obs"], self.device)), as_uint8(torch.stack(window, 1))

    def artifacts(self, run_dir: Path, logger: Any, step: int) -> None:
        """After each evaluation: the open-loop strip (real rows over imagined rows) of the latest update's first
        sequences, as media/open_loop_<step>.png (and W&B media)."""
        if self.last_rows is None:
            return
        from wm.metrics.video import save_strip

        gt, pred = self.open_loop(self.last_rows)
        path = Path(run_dir) / "media" / f"open_loop_{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_strip(gt, pred, self.k, path)
        if logger is not None and hasattr(logger, "log_file"):
            logger.log_file("media/open_loop", path, "image", step)
