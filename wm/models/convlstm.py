"""ConvLSTM video prediction (Shi et al. 2015), optionally action-conditioned (a pixel world model).

Shapes: a batch is dict(frames=(B, T, C, H, W) uint8[, actions=(B, T, A) float]), T = context + horizon.
Frames are scaled to [0, 1] and, with ``patch`` = p > 1, folded space-to-depth to (C*p*p, H/p, W/p)
(OpenSTL's ``reshape_patch``): 64x64x1 with p=4 becomes 16x16x16, which makes the recurrent convolutions
about 16x cheaper.

Network: a stack of ConvLSTM cells (gates from one convolution over [input, h]; optional peephole
connections W_c * c as in the paper) unrolled over time; a 1x1 convolution reads the next frame from the top
hidden state. Step t consumes frame t (plus, in the action-conditioned mode, action t broadcast over space,
the action taken between frame t and t+1) and predicts frame t+1. The first ``context`` frames are given;
after that the model consumes its own predictions (closed loop). ``forecaster=separate`` gives the steps that
produce predicted frames their own cells, initialised from the encoder's states: Shi et al.'s
encoder-forecaster; ``shared`` uses one stack throughout (OpenSTL's ConvLSTM).

Training: MSE over all T-1 next-frame outputs. Scheduled sampling (``ss_steps`` > 0): during training each
sequence is fed the ground-truth frame instead of its own prediction with a probability that decays linearly
from 1 to 0 over ``ss_steps`` optimizer steps; with ``ss_steps`` = 0 training is closed-loop from the start.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import POSITIVE, check_tree, param, require
from wm.core.schedule import cosine_lr
from wm.metrics.video import VideoMetrics, blank, copy_last


def to_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(..., C, H, W) -> (..., C*p*p, H/p, W/p)."""
    if p == 1:
        return x
    *lead, C, H, W = x.shape
    x = x.reshape(-1, C, H, W)
    return F.pixel_unshuffle(x, p).reshape(*lead, C * p * p, H // p, W // p)


def from_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(..., C*p*p, h, w) -> (..., C, h*p, w*p)."""
    if p == 1:
        return x
    *lead, Cp, h, w = x.shape
    x = x.reshape(-1, Cp, h, w)
    return F.pixel_shuffle(x, p).reshape(*lead, Cp // (p * p), h * p, w * p)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: (x (B, Cin, H, W), (h, c) (B, Ch, H, W)) -> (h, c)."""

    def __init__(self, in_ch: int, hid_ch: int, kernel: int, size: tuple[int, int] | None = None,
                 peephole: bool = False, forget_bias: float = 1.0):
        super().__init__()
        self.hid_ch = hid_ch
        self.conv = nn.Conv2d(in_ch + hid_ch, 4 * hid_ch, kernel, padding=kernel // 2)
        with torch.no_grad():
            self.conv.bias.zero_()
            self.conv.bias[hid_ch : 2 * hid_ch].fill_(forget_bias)
        self.peephole = peephole
        if peephole:
            if size is None:
                raise ValueError("peephole connections need the spatial size")
            self.w_ci = nn.Parameter(torch.zeros(hid_ch, *size))
            self.w_cf = nn.Parameter(torch.zeros(hid_ch, *size))
            self.w_co = nn.Parameter(torch.zeros(hid_ch, *size))

    def initial_state(self, batch: int, size: tuple[int, int], device, dtype=torch.float32):
        z = torch.zeros(batch, self.hid_ch, *size, device=device, dtype=dtype)
        return z, z.clone()

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        i, f, g, o = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        if self.peephole:
            i = i + self.w_ci * c
            f = f + self.w_cf * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole:
            o = o + self.w_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTMStack(nn.Module):
    """Stacked ConvLSTM cells + a 1x1 output convolution; ``step`` maps one input to the next frame."""

    def __init__(self, in_ch: int, out_ch: int, hidden: list[int], kernel: int, size: tuple[int, int],
                 peephole: bool = False):
        super().__init__()
        chans = [in_ch] + list(hidden)
        self.cells = nn.ModuleList(
            ConvLSTMCell(chans[i], chans[i + 1], kernel, size, peephole) for i in range(len(hidden))
        )
        self.out = nn.Conv2d(hidden[-1], out_ch, 1)
        self.size = size

    def initial_state(self, batch: int, device) -> list:
        return [cell.initial_state(batch, self.size, device) for cell in self.cells]

    def step(self, x: torch.Tensor, states: list) -> tuple[torch.Tensor, list]:
        new = []
        for cell, s in zip(self.cells, states):
            s = cell(x, s)
            new.append(s)
            x = s[0]
        return self.out(x), new


class ConvLSTM(nn.Module):
    """model=convlstm: video prediction with a ConvLSTM stack, trained by the supervised loop."""

    loop = "supervised"
    datasets = ("moving_mnist", "cartpole_pixels_random")

    @classmethod
    def refuse(cls, plan) -> str | None:
        problem = cls.check_dataset(plan.data_cls)
        size = getattr(plan.data, "size", None)
        if problem is None and size is not None and size % plan.model.patch:
            problem = f"model.patch={plan.model.patch} must divide the frame size data.size={size}"
        return problem

    @classmethod
    def check_dataset(cls, env_cls: type) -> str | None:
        """None if the dataset class yields video batches (train_batch / test_batches), else a one-line reason
        (for wm.validate)."""
        if all(hasattr(env_cls, k) for k in ("train_batch", "test_batches")):
            return None
        return f"model=convlstm predicts video frames; valid data: {', '.join(cls.datasets)}"

    @dataclass
    class Config:
        hidden: list[int] = param([64, 64], each=POSITIVE, nonempty=True)  # channels per ConvLSTM layer
        kernel: int = param(3, gt=0)
        patch: int = param(4, gt=0)  # space-to-depth factor (1 = none)
        peephole: bool = False
        forecaster: str = param("shared", choices=("shared", "separate"))  # separate: Shi et al.'s
        residual: bool = False  # predict the change from the input frame (good for slowly changing scenes)
        batch_size: int = param(16, gt=0)
        lr: float = param(1e-3, gt=0)
        lr_decay_steps: int = param(0, ge=0)  # cosine decay of lr to 0 over this many steps (0 = constant lr)
        grad_clip: float = param(1.0, ge=0)  # max gradient norm (0 = off)
        ss_steps: int = param(0, ge=0)  # scheduled sampling decay length in optimizer steps (0 = off)
        eval_batch: int = param(100, gt=0)
        eval_sequences: int = param(0, ge=0)  # 0 = the whole test set
        ssim: bool = True
        strip_sequences: int = param(4, ge=0)  # sequences drawn in the gt-vs-prediction strip / video

        def check(self) -> None:
            require(self.kernel % 2 == 1, "kernel", f"must be odd (got {self.kernel})")

    def __init__(self, cfg: ConvLSTM.Config, data: Any, device: torch.device | str = "cpu"):
        super().__init__()
        check_tree(cfg, "model")  # also when built directly, not through typed()
        self.cfg, self.data, self.device = cfg, data, torch.device(device)
        if data.size % cfg.patch:
            raise ValueError(f"model.patch={cfg.patch} must divide the frame size {data.size}")
        self.context, self.horizon = data.context, data.horizon
        self.action_dim = int(getattr(data, "action_dim", 0))
        p, C = cfg.patch, data.channels
        size = (data.size // p, data.size // p)
        in_ch, out_ch = C * p * p + self.action_dim, C * p * p
        self.encoder = ConvLSTMStack(in_ch, out_ch, cfg.hidden, cfg.kernel, size, cfg.peephole)
        self.forecaster = (
            ConvLSTMStack(in_ch, out_ch, cfg.hidden, cfg.kernel, size, cfg.peephole)
            if cfg.forecaster == "separate" else None
        )
        self.to(self.device)
        self.opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)
        self.last_eval: dict[str, Any] = {}
        self.train_time = 0.0
        self.train_sequences = 0
        self.steps_done = 0

    # ------------------------------------------------------------------------------------------- core
    def _prep(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = batch["frames"].to(self.device, non_blocking=True).float().div_(255.0)
        a = batch.get("actions")
        a = a.to(self.device).float() if (a is not None and self.action_dim) else None
        return x, a

    def rollout(self, x: torch.Tensor, actions: torch.Tensor | None, gt_prob: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Frames (B, T, C, H, W) in [0, 1] -> next-frame predictions for frames 1..T-1, (B, T-1, C, H, W).

        Frames < context are always given; later inputs are the model's previous prediction, replaced per
        sequence by the true frame with probability ``gt_prob`` (scheduled sampling; 0 at test time).
        """
        p = self.cfg.patch
        xp = to_patches(x, p)
        B, T = xp.shape[:2]
        states = self.encoder.initial_state(B, self.device)
        preds = []
        prev = None
        for t in range(T - 1):
            inp = xp[:, t]
            if t >= self.context and prev is not None:
                if gt_prob > 0:
                    use_gt = (torch.rand(B, 1, 1, 1, device=self.device, generator=generator) < gt_prob).float()
                    inp = use_gt * inp + (1 - use_gt) * prev
                else:
                    inp = prev
            frame_in = inp
            if actions is not None:
                a = actions[:, t, :, None, None].expand(-1, -1, *inp.shape[-2:])
                inp = torch.cat([inp, a], 1)
            net = self.forecaster if (self.forecaster is not None and t >= self.context - 1) else self.encoder
            out, states = net.step(inp, states)
            if self.cfg.residual:
                out = out + frame_in
            preds.append(out)
            prev = out
        return from_patches(torch.stack(preds, 1), p)

    @torch.no_grad()
    def predict(self, batch: dict) -> torch.Tensor:
        """The ``horizon`` predicted frames, clipped to [0, 1]: (B, horizon, C, H, W)."""
        was = self.training
        self.eval()
        x, a = self._prep(batch)
        out = self.rollout(x, a)[:, self.context - 1 :].clamp(0, 1)
        self.train(was)
        return out

    def ss_prob(self, step: int) -> float:
        s = self.cfg.ss_steps
        return max(0.0, 1.0 - step / s) if s > 0 else 0.0

    def lr_at(self, step: int) -> float:
        return cosine_lr(self.cfg.lr, step, self.cfg.lr_decay_steps)

    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        self.train()
        batch = self.data.train_batch(step, self.cfg.batch_size)
        x, a = self._prep(batch)
        gt_prob = self.ss_prob(step)
        g = torch.Generator(device=self.device).manual_seed(int(step) * 7919 + 17)
        pred = self.rollout(x, a, gt_prob, g)
        loss = F.mse_loss(pred, x[:, 1:])
        lr = self.lr_at(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip if self.cfg.grad_clip > 0 else 1e12)
        self.opt.step()
        self.train_time += time.perf_counter() - t0
        self.train_sequences += x.shape[0]
        self.steps_done = step + 1
        with torch.no_grad():
            # per-frame summed MSE on the predicted part, comparable in scale to eval/mse
            fmse = ((pred[:, self.context - 1 :] - x[:, self.context :]) ** 2).flatten(2).sum(-1).mean()
        return {
            "train/loss": float(loss.detach()),
            "train/mse_frame": float(fmse),
            "model/grad_norm": float(gn),
            "model/lr": lr,
            "model/ss_prob": gt_prob,
            "train/seq_per_s": self.train_sequences / max(self.train_time, 1e-9),
        }

    # ------------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Test-set metrics of the model and of the copy-last-frame and blank baselines ("eval/..." keys)."""
        t0 = time.perf_counter()
        model_m = VideoMetrics(self.cfg.ssim)
        copy_m, blank_m = VideoMetrics(self.cfg.ssim, False), VideoMetrics(self.cfg.ssim, False)
        background = getattr(self.data, "background", None)
        seen = 0
        limit = self.cfg.eval_sequences or len(self.data)
        for batch in self.data.test_batches(self.cfg.eval_batch):
            if seen >= limit:
                break
            batch = {k: v[: limit - seen] for k, v in batch.items()}
            x = batch["frames"].float() / 255.0
            true = x[:, self.context :]
            model_m.update(self.predict(batch).cpu(), true)
            copy_m.update(copy_last(x[:, : self.context], self.horizon), true)
            bg = background if background is not None else torch.zeros(x.shape[2:])
            blank_m.update(blank(bg, x.shape[0], self.horizon), true)
            seen += x.shape[0]
        out = {f"eval/{k}": v for k, v in model_m.compute().items()}
        out.update({f"eval/{k}_copy_last": v for k, v in copy_m.compute().items()})
        out.update({f"eval/{k}_blank": v for k, v in blank_m.compute().items()})
        out["eval/sequences"] = seen
        out["eval/seconds"] = time.perf_counter() - t0
        self.last_eval = {
            "scalars": out,
            "per_frame": {
                "model": model_m.per_frame(),
                "copy_last": copy_m.per_frame(),
                "blank": blank_m.per_frame(),
            },
        }
        return out

    # ------------------------------------------------------------------------------------------- artifacts
    @torch.no_grad()
    def strips(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth and prediction (context frames + predicted) for the first n test sequences, uint8."""
        batch = next(iter(self.data.test_batches(n)))
        gt = batch["frames"][:n].float() / 255.0
        pred = torch.cat([gt[:, : self.context], self.predict(batch).cpu()], 1)
        return (gt * 255).round().byte().numpy(), (pred * 255).round().byte().numpy()

    def artifacts(self, out_dir: Path, logger: Any = None) -> dict[str, Path]:
        """Write the gt-vs-prediction strip (PNG), a side-by-side video (MP4, else GIF) and per-frame metrics."""
        from wm.metrics.video import record_media, save_strip, save_video

        out_dir = Path(out_dir)
        media = out_dir / "media"
        media.mkdir(parents=True, exist_ok=True)
        written = {}
        n = max(1, self.cfg.strip_sequences)
        gt, pred = self.strips(n)
        tag = f"{self.steps_done:07d}"
        written["strip"] = save_strip(gt, pred, self.context, media / f"prediction_strip_{tag}.png")
        written["video"] = save_video(gt, pred, self.context, media / f"prediction_{tag}")
        return record_media(out_dir, logger, self.steps_done, written, self.last_eval)

    # ------------------------------------------------------------------------------------------- checkpoint
    def state_dict(self, *args, **kwargs):
        return {
            "net": super().state_dict(*args, **kwargs),
            "opt": self.opt.state_dict(),
            "train_time": self.train_time,
            "train_sequences": self.train_sequences,
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state, strict: bool = True):
        super().load_state_dict(state["net"], strict=strict)
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))  # never share moment tensors
        self.train_time = state.get("train_time", 0.0)
        self.train_sequences = state.get("train_sequences", 0)
        self.steps_done = state.get("steps_done", 0)
