"""A DIAMOND-style diffusion model of the next frame (Alonso et al. 2024), trained with EDM (Karras et al. 2022).

model=diffusion predicts frame t+1 by denoising: a U-Net D(x; sigma, frames t-k+1..t, actions t-k+1..t) maps
a noisy copy x = y + sigma * n of the next frame y to an estimate of y; sampling starts from noise and walks
down a few noise levels. Used here as a video predictor in the supervised loop, next to ConvLSTM, on the
same datasets (Moving MNIST, CartPole pixel rollouts with actions).

Shapes: a batch is dict(frames=(B, T, C, H, W) uint8[, actions=(B, T, A) float]), T = context + horizon;
row t of ``actions`` is the action taken after frame t (one-hot for discrete actions). Frames are scaled to
[-1, 1]. The denoiser sees the last k = ``cond_frames`` frames, channel-stacked with the noisy frame, and
the k actions that followed them.

EDM preconditioning (Karras et al. 2022, Table 1), sigma_d = ``sigma_data``:
    D(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x; c_noise(s))
    c_skip = sigma_d^2 / (s^2 + sigma_d^2)     c_out = s sigma_d / sqrt(s^2 + sigma_d^2)
    c_in = 1 / sqrt(s^2 + sigma_d^2)           c_noise = ln(s) / 4
Training: ln(s) ~ N(``p_mean``, ``p_std``^2) (clipped to [``train_sigma_min``, ``train_sigma_max``] as DIAMOND
does), loss weight lambda(s) = (s^2 + sigma_d^2) / (s sigma_d)^2 on ||D - y||^2, which is the same as the
unweighted ||F - (y - c_skip x) / c_out||^2 that is computed (better conditioned). DIAMOND's offset noise
(``sigma_offset_noise`` > 0: a per-channel constant added to the noise, with s replaced by
sqrt(s^2 + offset^2) in the conditioners) is off by default. The conditioning frames enter as frame / sigma_d.

Network (DIAMOND's inner model, sized by config): noise level -> Fourier features (+ a linear embedding of
the k actions) -> MLP: the conditioning vector. A U-Net with ``len(channels)`` levels (each after the first at
half the resolution), ``depth`` residual blocks per level whose group norms take their scale and shift from
the conditioning vector (adaptive group norm), skip connections from every down block to the up path, and
two residual blocks (+ self-attention) in the middle. With ``patch`` = p > 1 the frames are folded
space-to-depth to (C p^2, H/p, W/p) first (as ConvLSTM does), which makes the U-Net about p^2 times cheaper,
but a denoiser learns much more slowly that way: it must carry every pixel's noise through its own channel
(on 16x16 moving squares, 300 updates took the denoised error at sigma = 0.28 from RMSE 0.31 to 0.02 with
p = 1 and only to 0.21 with p = 4; on Moving MNIST, 200 updates reached 0.15 with p = 1 and 0.21 with p = 4).
The default works at full resolution, as DIAMOND does, with narrow early levels to keep it cheap.

Sampling: Euler (DIAMOND's default) or Heun steps over the Karras schedule
    s_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < N, then s_N = 0
with N = ``denoising_steps`` (DIAMOND: 3), starting from n ~ N(0, I) as DIAMOND's code does
(``start_noise=unit``) or from sigma_max * n as EDM does (``sigma_max``). Starting below the noise level the
denoiser is told leaves less noise for the later steps to remove: on Moving MNIST after 600 CPU updates it
scored SSIM 0.69 at 3 steps against 0.14 from sigma_max * n, whose leftover noise an undertrained denoiser
paints as speckle (Heun was worse still: its correction leans on the denoiser at sigma_min; SSIM on 100 test
sequences, one seed). Each denoised estimate is clipped to [-1, 1] and quantised to the 256 uint8 levels (as
DIAMOND does), so a predicted frame is a valid image before it is fed back autoregressively.

DIAMOND's published denoiser settings (Atari 100k) are conf/experiment/diffusion_diamond.yaml; the defaults
here are sized for a 2-core CPU.
"""

from __future__ import annotations

import copy
import itertools
import math
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
from wm.core.seeds import NOISE_STREAM, episode_seed
from wm.metrics.sharpness import SharpnessRatio
from wm.metrics.video import VideoMetrics, blank, copy_last

GN_GROUP_SIZE = 32  # channels per group norm group (DIAMOND's)


# ----------------------------------------------------------------------------------------------- EDM pieces
def edm_preconditioning(sigma: torch.Tensor, sigma_data: float, sigma_offset: float = 0.0):
    """EDM's (c_skip, c_out, c_in, c_noise) for noise levels ``sigma`` (any shape, each the same shape).

    With DIAMOND's offset noise, sigma is replaced by sqrt(sigma^2 + sigma_offset^2) throughout."""
    s = (sigma.square() + sigma_offset**2).sqrt() if sigma_offset > 0 else sigma
    total = s.square() + sigma_data**2
    return sigma_data**2 / total, s * sigma_data / total.sqrt(), 1 / total.sqrt(), s.log() / 4


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2: the weight on ||D - y||^2 = 1 / c_out^2."""
    return (sigma.square() + sigma_data**2) / (sigma * sigma_data).square()


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The ``steps`` noise levels of Karras et al.'s schedule from sigma_max down to sigma_min, then 0:
    shape (steps + 1,). With one step the only level is sigma_max."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1] and round to the nearest of the 256 levels a uint8 frame can hold (DIAMOND floors;
    rounding keeps the error symmetric)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


# ----------------------------------------------------------------------------------------------- network
def _groups(channels: int) -> int:
    return max(1, channels // GN_GROUP_SIZE)


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar: (B,) -> (B, dim) [cos, sin]; the frequencies are a fixed buffer."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("weight", torch.randn(1, dim // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x[:, None] @ self.weight
        return torch.cat([f.cos(), f.sin()], -1)


class AdaGroupNorm(nn.Module):
    """Group norm whose per-channel scale and shift come from the conditioning vector:
    (x (B, C, H, W), cond (B, D)) -> (B, C, H, W)."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.groups = _groups(channels)
        self.linear = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, 1)
        return F.group_norm(x, self.groups) * (1 + scale) + shift


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the pixels of a feature map (B, C, H, W) -> (B, C, H, W), residual."""

    def __init__(self, channels: int, head_dim: int = 8):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            raise ValueError(f"attention: {channels} channels do not split into {self.heads} heads")
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)  # starts as the identity
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        return x + self.out(y.transpose(-1, -2).reshape(B, C, H, W))


class ResBlock(nn.Module):
    """norm -> SiLU -> conv, twice, with adaptive group norms, plus a (1x1-projected) skip:
    (x (B, Cin, H, W), cond (B, D)) -> (B, Cout, H, W). The second conv starts at zero: the block starts
    as its skip."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, attention: bool = False):
        super().__init__()
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.norm1, self.conv1 = AdaGroupNorm(in_ch, cond_dim), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = AdaGroupNorm(out_ch, cond_dim), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        self.attn = SelfAttention2d(out_ch) if attention else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.attn(h + self.skip(x))


class UNet(nn.Module):
    """DIAMOND's U-Net: (x (B, channels[0], H, W), cond (B, D)) -> (B, channels[0], H, W).

    Level i runs ``depth`` residual blocks at resolution H / 2^i with ``channels[i]`` channels; every down
    block's output (and the level's input) is concatenated into the matching up block. H and W must be
    divisible by 2^(levels - 1)."""

    def __init__(self, channels: list[int], depth: int, cond_dim: int, mid_attention: bool = True):
        super().__init__()
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        for i, c2 in enumerate(channels):
            c1 = channels[max(0, i - 1)]  # the channels the level receives (and gives back on the way up)
            self.down.append(nn.ModuleList(
                ResBlock(c1 if j == 0 else c2, c2, cond_dim) for j in range(depth)))
            # up: depth blocks that each take one down output, then one that takes the level's input
            self.up.insert(0, nn.ModuleList(
                [ResBlock(2 * c2, c2, cond_dim) for _ in range(depth)] + [ResBlock(c1 + c2, c1, cond_dim)]))
        last = channels[-1]
        self.mid = nn.ModuleList(ResBlock(last, last, cond_dim, attention=mid_attention) for _ in range(2))
        self.downsample = nn.ModuleList(
            [nn.Identity()] + [nn.Conv2d(c, c, 3, stride=2, padding=1) for c in channels[:-1]])
        self.upsample = nn.ModuleList(
            [nn.Identity()] + [nn.Conv2d(c, c, 3, padding=1) for c in reversed(channels[:-1])])

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        skips = []
        for blocks, down in zip(self.down, self.downsample):
            x = down(x)
            level = [x]
            for block in blocks:
                x = block(x, cond)
                level.append(x)
            skips.append(level)
        for block in self.mid:
            x = block(x, cond)
        for i, (blocks, up) in enumerate(zip(self.up, self.upsample)):
            if i > 0:  # nearest-neighbour upsampling, then a 3x3 conv
                x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            level = skips.pop()
            for block in blocks:
                x = block(torch.cat([x, level.pop()], 1), cond)
        return x


class Denoiser(nn.Module):
    """The network F of EDM: (noisy frame * c_in (B, C', h, w), c_noise (B,), conditioning frames / sigma_data
    (B, k C', h, w), actions (B, k A) or None) -> (B, C', h, w). C' = C p^2 and h = H / p with the
    space-to-depth ``patch`` p (the caller folds and unfolds)."""

    def __init__(self, frame_ch: int, cond_frames: int, action_dim: int, channels: list[int], depth: int,
                 cond_dim: int, mid_attention: bool):
        super().__init__()
        self.noise_emb = FourierFeatures(cond_dim)
        # a linear map of the k concatenated actions: DIAMOND's per-step embedding table when they are one-hot
        self.act_emb = nn.Linear(cond_frames * action_dim, cond_dim, bias=False) if action_dim else None
        self.cond_proj = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.conv_in = nn.Conv2d((cond_frames + 1) * frame_ch, channels[0], 3, padding=1)
        self.unet = UNet(channels, depth, cond_dim, mid_attention)
        self.norm_out = nn.GroupNorm(_groups(channels[0]), channels[0])
        self.conv_out = nn.Conv2d(channels[0], frame_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # F = 0 at the start: D begins as c_skip x

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, frames: torch.Tensor,
                actions: torch.Tensor | None) -> torch.Tensor:
        emb = self.noise_emb(c_noise)
        if self.act_emb is not None:
            emb = emb + self.act_emb(actions)
        cond = self.cond_proj(emb)
        h = self.unet(self.conv_in(torch.cat([frames, x], 1)), cond)
        return self.conv_out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------- the EDM core
@dataclass
class EDMConfig:
    """The denoiser, its EDM noise and sampler settings and its optimiser: what model=diffusion (supervised video
    prediction) and model=diffusion_world (the online world model of wm/models/diffusion_world.py) share."""

    cond_frames: int = param(4, gt=0)  # k: the frames (and actions) the denoiser is conditioned on
    channels: list[int] = param([8, 16, 32, 64], each=POSITIVE, nonempty=True)  # U-Net channels per level
    depth: int = param(1, gt=0)  # residual blocks per U-Net level
    cond_dim: int = param(64, gt=0)  # width of the noise (+ action) embedding; even
    mid_attention: bool = True  # self-attention in the U-Net's middle blocks (DIAMOND: always)
    patch: int = param(1, gt=0)  # space-to-depth factor (1 = full resolution, as DIAMOND)
    sigma_data: float = param(0.5, gt=0)  # EDM's data standard deviation (DIAMOND: 0.5)
    sigma_offset_noise: float = param(0.0, ge=0)  # DIAMOND's offset noise (0.3 there; 0 = plain EDM)
    p_mean: float = param(-0.4)  # training noise: ln(sigma) ~ N(p_mean, p_std^2) (DIAMOND; EDM: -1.2, 1.2)
    p_std: float = param(1.2, gt=0)
    train_sigma_min: float = param(2e-3, gt=0)  # training sigmas are clipped to this range (DIAMOND)
    train_sigma_max: float = param(20.0, gt=0)
    denoising_steps: int = param(3, gt=0)  # sampler steps per frame (DIAMOND: 3)
    sampler: str = param("euler", choices=("euler", "heun"))  # heun: 2 denoiser calls per step but the last
    sigma_min: float = param(2e-3, gt=0)  # the sampler's Karras schedule (DIAMOND: 2e-3, 5, rho 7)
    sigma_max: float = param(5.0, gt=0)
    rho: float = param(7.0, gt=0)
    start_noise: str = param("unit", choices=("unit", "sigma_max"))  # x_0 = n (DIAMOND) | sigma_max n (EDM)
    batch_size: int = param(32, gt=0)  # training windows (k + 1 frames) per step, one per sequence
    lr: float = param(1e-3, gt=0)
    weight_decay: float = param(1e-2, ge=0)  # AdamW, on conv and linear weights only
    adam_eps: float = param(1e-8, gt=0)
    warmup_steps: int = param(20, ge=0)  # linear learning-rate warm-up (DIAMOND: 100)
    lr_decay_steps: int = param(0, ge=0)  # cosine decay of lr to 0 over this many steps (0 = constant lr)
    grad_clip: float = param(1.0, ge=0)  # max gradient norm (0 = off)

    def check(self) -> None:
        require(self.cond_dim % 2 == 0, "cond_dim", f"must be even: Fourier features are cos and sin halves "
                                                    f"(got {self.cond_dim})")
        require(self.sigma_min < self.sigma_max, "sigma_min",
                f"must be below sigma_max={self.sigma_max} (got {self.sigma_min})")
        require(self.train_sigma_min < self.train_sigma_max, "train_sigma_min",
                f"must be below train_sigma_max={self.train_sigma_max} (got {self.train_sigma_min})")


class FramePredictor(nn.Module):
    """The EDM model of the next frame: the denoiser network, its AdamW optimiser, the training loss and the
    sampler. Frames are (..., C, H, W) floats in [-1, 1]; actions (..., A) floats or None."""

    def __init__(self, cfg: EDMConfig, channels: int, action_dim: int, device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg, self.device, self.k = cfg, torch.device(device), cfg.cond_frames
        self.channels, self.action_dim = channels, action_dim
        p = cfg.patch
        self.net = Denoiser(channels * p * p, cfg.cond_frames, action_dim, cfg.channels, cfg.depth, cfg.cond_dim,
                            cfg.mid_attention)
        self.to(self.device)
        decay = [w for w in self.parameters() if w.dim() > 1]  # conv and linear weights, not biases or norms
        rest = [w for w in self.parameters() if w.dim() <= 1]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, eps=cfg.adam_eps)

    @staticmethod
    def check_sizes(cfg: EDMConfig, size: int | None, context: int | None) -> str | None:
        """None if frames of ``size`` and ``context`` given frames fit the config, else a one-line reason."""
        if context is not None and cfg.cond_frames > context:
            return f"model.cond_frames={cfg.cond_frames} exceeds the given frames data.context={context}"
        if size is None:
            return None
        if size % cfg.patch:
            return f"model.patch={cfg.patch} must divide the frame size data.size={size}"
        factor = 2 ** (len(cfg.channels) - 1)
        if (size // cfg.patch) % factor:
            return (f"the U-Net's {len(cfg.channels)} levels (model.channels) halve the {size // cfg.patch}-pixel "
                    f"frames (data.size / model.patch) {len(cfg.channels) - 1} times: it must be divisible by {factor}")
        return None

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, frames: torch.Tensor,
                actions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """EDM's D and the raw network output F for noisy frames ``x`` (B, C, H, W) at noise levels ``sigma``
        (B,), conditioned on ``frames`` (B, k, C, H, W) in [-1, 1] and ``actions`` (B, k, A) or None.
        Returns (D (B, C, H, W), F (B, C, H, W)); D is not clipped."""
        cfg, p = self.cfg, self.cfg.patch
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, cfg.sigma_data, cfg.sigma_offset_noise)
        B, k, C, H, W = frames.shape
        inp = F.pixel_unshuffle(x * c_in[:, None, None, None], p) if p > 1 else x * c_in[:, None, None, None]
        ctx = (frames / cfg.sigma_data).reshape(B, k * C, H, W)
        ctx = F.pixel_unshuffle(ctx, p) if p > 1 else ctx
        out = self.net(inp, c_noise, ctx, actions.reshape(B, -1) if actions is not None else None)
        out = F.pixel_shuffle(out, p) if p > 1 else out
        return c_skip[:, None, None, None] * x + c_out[:, None, None, None] * out, out

    def sample_training_sigma(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """(n,) noise levels with ln(sigma) ~ N(p_mean, p_std^2), clipped to the training range."""
        cfg = self.cfg
        z = torch.randn(n, device=self.device, generator=generator)
        return (z * cfg.p_std + cfg.p_mean).exp().clamp(cfg.train_sigma_min, cfg.train_sigma_max)

    def denoising_loss(self, target: torch.Tensor, frames: torch.Tensor, actions: torch.Tensor | None,
                       generator: torch.Generator | None) -> torch.Tensor:
        """EDM's loss for next frames ``target`` (B, C, H, W) in [-1, 1] given ``frames`` (B, k, C, H, W) and
        ``actions`` (B, k, A) or None: the mean over pixels and batch of lambda(sigma) ||D - y||^2, computed
        as ||F - (y - c_skip x) / c_out||^2. The noise comes from ``generator`` (None: torch's global RNG). Returns a scalar."""
        cfg = self.cfg
        B, C = target.shape[:2]
        sigma = self.sample_training_sigma(B, generator)
        noise = torch.randn(target.shape, device=self.device, generator=generator)
        x = target + sigma[:, None, None, None] * noise
        if cfg.sigma_offset_noise > 0:  # DIAMOND: a random constant per channel, so brightness is learned too
            x = x + cfg.sigma_offset_noise * torch.randn(B, C, 1, 1, device=self.device, generator=generator)
        c_skip, c_out, _, _ = edm_preconditioning(sigma, cfg.sigma_data, cfg.sigma_offset_noise)
        _, out = self.denoise(x, sigma, frames, actions)
        goal = (target - c_skip[:, None, None, None] * x) / c_out[:, None, None, None]
        return F.mse_loss(out, goal)

    @torch.no_grad()
    def sample_next(self, frames: torch.Tensor, actions: torch.Tensor | None, steps: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """One next frame per sequence: ``frames`` (B, k, C, H, W) in [-1, 1], ``actions`` (B, k, A) or None
        -> (B, C, H, W) in [-1, 1] on the uint8 levels, by ``steps`` (default ``denoising_steps``) sampler
        steps over the Karras schedule."""
        cfg = self.cfg
        sigmas = karras_sigmas(steps or cfg.denoising_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
        B, _, C, H, W = frames.shape
        x = torch.randn((B, C, H, W), device=self.device, generator=generator)
        if cfg.start_noise == "sigma_max":
            x = x * sigmas[0]
        ones = torch.ones(B, device=self.device)

        def slope(x: torch.Tensor, s: float) -> torch.Tensor:  # dx/dsigma of the probability-flow ODE
            return (x - quantize(self.denoise(x, ones * s, frames, actions)[0])) / s

        for s, s_next in itertools.pairwise(sigmas):
            d = slope(x, s)
            x_next = x + (s_next - s) * d
            if cfg.sampler == "heun" and s_next > 0:  # Heun's correction (none on the step to sigma = 0)
                x_next = x + (s_next - s) * (d + slope(x_next, s_next)) / 2
            x = x_next
        return quantize(x)  # the last step lands on the quantised estimate; rounding removes float residue

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps``, then constant or a cosine decay to 0 at ``lr_decay_steps``."""
        cfg = self.cfg
        lr = cosine_lr(cfg.lr, step, cfg.lr_decay_steps)
        if cfg.warmup_steps > 0:
            lr *= min(1.0, (step + 1) / cfg.warmup_steps)
        return lr

    def optimize(self, loss: torch.Tensor, step: int) -> tuple[float, float]:
        """One AdamW step on ``loss`` at the learning rate of ``step``, the gradient norm clipped to ``grad_clip``.
        Returns (gradient norm before the clip, learning rate)."""
        lr = self.lr_at(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip if self.cfg.grad_clip > 0 else 1e12)
        self.opt.step()
        return float(gn), lr


# ----------------------------------------------------------------------------------------------- the video model
class Diffusion(FramePredictor):
    """model=diffusion: an EDM diffusion model of the next frame, trained by the supervised loop."""

    loop = "supervised"
    datasets = ("moving_mnist", "cartpole_pixels_random")

    @dataclass
    class Config(EDMConfig):
        extra_eval_steps: list[int] = param([], each=POSITIVE)  # also evaluate at these denoising steps
        eval_batch: int = param(100, gt=0)
        eval_sequences: int = param(0, ge=0)  # 0 = the whole test set
        eval_seed: int = param(0, ge=0)  # the sampling noise of evaluations (the same at every evaluation)
        ssim: bool = True
        strip_sequences: int = param(4, ge=0)  # sequences drawn in the gt-vs-prediction strip / video

        def check(self) -> None:
            super().check()
            require(self.denoising_steps not in self.extra_eval_steps, "extra_eval_steps",
                    f"repeats denoising_steps={self.denoising_steps}, which is always evaluated")

    @classmethod
    def refuse(cls, plan) -> str | None:
        if not all(hasattr(plan.data_cls, k) for k in ("train_batch", "test_batches")):
            return f"model=diffusion predicts video frames; valid data: {', '.join(cls.datasets)}"
        return cls.check_sizes(plan.model, getattr(plan.data, "size", None), getattr(plan.data, "context", None))

    def __init__(self, cfg: Diffusion.Config, data: Any, device: torch.device | str = "cpu"):
        check_tree(cfg, "model")  # also when built directly, not through typed()
        if (problem := self.check_sizes(cfg, data.size, data.context)) is not None:
            raise ValueError(problem)
        super().__init__(cfg, data.channels, int(getattr(data, "action_dim", 0)), device)
        self.data, self.context, self.horizon = data, data.context, data.horizon
        self.seed = int(getattr(data, "seed", 0))
        self.last_eval: dict[str, Any] = {}
        self.train_time = 0.0
        self.train_windows = 0
        self.steps_done = 0

    def _prep(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames (B, T, C, H, W) uint8 -> float in [-1, 1] on the device; actions (B, T, A) or None."""
        x = batch["frames"].to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        a = batch.get("actions")
        a = a.to(self.device).float() if (a is not None and self.action_dim) else None
        return x, a

    @torch.no_grad()
    def rollout(self, frames: torch.Tensor, actions: torch.Tensor | None, steps: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Autoregressive prediction of the ``horizon`` frames after the ``context`` given ones: ``frames``
        (B, >= context, C, H, W) in [-1, 1] (only the first ``context`` are read), ``actions`` (B, T, A) or
        None -> (B, horizon, C, H, W) in [-1, 1]. Each predicted frame is fed back (quantised)."""
        k, c = self.k, self.context
        window = list(frames[:, c - k : c].unbind(1))
        preds = []
        for t in range(c, c + self.horizon):
            a = actions[:, t - k : t] if actions is not None else None
            nxt = self.sample_next(torch.stack(window[-k:], 1), a, steps, generator)
            preds.append(nxt)
            window.append(nxt)
        return torch.stack(preds, 1)

    @torch.no_grad()
    def predict(self, batch: dict, steps: int | None = None, seed: int | None = None) -> torch.Tensor:
        """The ``horizon`` predicted frames of a batch as floats in [0, 1] on the uint8 levels:
        (B, horizon, C, H, W). ``seed`` fixes the sampling noise (default: ``eval_seed``)."""
        was = self.training
        self.eval()
        x, a = self._prep(batch)
        g = torch.Generator(device=self.device).manual_seed(self.cfg.eval_seed if seed is None else seed)
        out = ((self.rollout(x, a, steps, g) + 1) * 127.5).round() / 255  # exactly as true frames are scaled
        self.train(was)
        return out


    def train_step(self, step: int) -> dict[str, float]:
        """One AdamW update on ``batch_size`` windows of k + 1 frames, one drawn from each training sequence."""
        t0 = time.perf_counter()
        self.train()
        cfg, k = self.cfg, self.k
        g = torch.Generator(device=self.device).manual_seed(episode_seed(self.seed, NOISE_STREAM, step))
        x, a = self._prep(self.data.train_batch(step, cfg.batch_size))
        B, T = x.shape[:2]
        start = torch.randint(0, T - k, (B, 1), device=self.device, generator=g)
        idx = start + torch.arange(k + 1, device=self.device)  # (B, k + 1): k given frames, then the target
        rows = torch.arange(B, device=self.device)[:, None]
        win = x[rows, idx]
        acts = a[rows, idx[:, :k]] if a is not None else None
        loss = self.denoising_loss(win[:, k], win[:, :k], acts, g)
        gn, lr = self.optimize(loss, step)
        self.train_time += time.perf_counter() - t0
        self.train_windows += B
        self.steps_done = step + 1
        return {
            "train/loss": float(loss.detach()),
            "model/grad_norm": float(gn),
            "model/lr": lr,
            "train/windows_per_s": self.train_windows / max(self.train_time, 1e-9),
        }

    # --------------------------------------------------------------------------------------- evaluation
    def eval_steps(self) -> list[int]:
        """The denoising step counts an evaluation scores: ``denoising_steps`` first, then the extra ones."""
        return [self.cfg.denoising_steps, *self.cfg.extra_eval_steps]

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Test-set metrics ("eval/..." keys) of autoregressive rollouts from the context, as ConvLSTM reports
        them (per-frame MSE / MAE summed over pixels, SSIM), plus the sharpness ratio
        (wm.metrics.sharpness), for the copy-last-frame and blank baselines too. Keys for ``extra_eval_steps``
        end in ``_steps<n>``; ``eval/frames_per_s`` is imagined frames per second at ``denoising_steps``."""
        steps = self.eval_steps()
        model_m = {n: (VideoMetrics(self.cfg.ssim), SharpnessRatio()) for n in steps}
        copy_m = (VideoMetrics(self.cfg.ssim, False), SharpnessRatio())
        blank_m = (VideoMetrics(self.cfg.ssim, False), SharpnessRatio())
        background = getattr(self.data, "background", None)
        seen, sample_time = 0, 0.0
        limit = self.cfg.eval_sequences or len(self.data)
        for i, batch in enumerate(self.data.test_batches(self.cfg.eval_batch)):
            if seen >= limit:
                break
            batch = {k: v[: limit - seen] for k, v in batch.items()}
            x = batch["frames"].float() / 255.0
            true = x[:, self.context :]
            for n in steps:
                t0 = time.perf_counter()
                pred = self.predict(batch, n, seed=self.cfg.eval_seed + i).cpu()  # same noise for every n
                if n == steps[0]:
                    sample_time += time.perf_counter() - t0
                for m in model_m[n]:
                    m.update(pred, true)
            bg = background if background is not None else torch.zeros(x.shape[2:])
            for m in copy_m:
                m.update(copy_last(x[:, : self.context], self.horizon), true)
            for m in blank_m:
                m.update(blank(bg, x.shape[0], self.horizon), true)
            seen += x.shape[0]
        out, per_frame = {}, {}
        for n in steps:
            tag = "" if n == steps[0] else f"_steps{n}"
            video, sharp = model_m[n]
            out.update({f"eval/{k}{tag}": v for k, v in video.compute().items()})
            out[f"eval/sharpness{tag}"] = sharp.compute()
            per_frame[f"model{tag}"] = {**video.per_frame(), "sharpness": sharp.per_frame()}
        for who, (video, sharp) in (("copy_last", copy_m), ("blank", blank_m)):
            out.update({f"eval/{k}_{who}": v for k, v in video.compute().items()})
            out[f"eval/sharpness_{who}"] = sharp.compute()
            per_frame[who] = {**video.per_frame(), "sharpness": sharp.per_frame()}
        out["eval/sequences"] = seen
        out["eval/frames_per_s"] = seen * self.horizon / max(sample_time, 1e-9)
        self.last_eval = {"scalars": out, "denoising_steps": steps, "per_frame": per_frame}
        return out

    # --------------------------------------------------------------------------------------- artifacts
    @torch.no_grad()
    def strips(self, n: int, steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth and prediction (context frames + predicted) of the first n test sequences:
        uint8 (n, T, C, H, W) each."""
        batch = next(iter(self.data.test_batches(n)))
        gt = batch["frames"][:n]
        pred = (self.predict({k: v[:n] for k, v in batch.items()}, steps) * 255).round().byte().cpu()
        return gt.numpy(), torch.cat([gt[:, : self.context], pred], 1).numpy()

    def artifacts(self, out_dir: Path, logger: Any = None) -> dict[str, Path]:
        """Write the gt-vs-prediction strip (PNG) for each evaluated step count, a side-by-side video (MP4,
        else GIF) at ``denoising_steps``, and the last evaluation's per-frame metrics."""
        from wm.metrics.video import record_media, save_strip, save_video

        out_dir = Path(out_dir)
        media = out_dir / "media"
        media.mkdir(parents=True, exist_ok=True)
        written = {}
        n = max(1, self.cfg.strip_sequences)
        tag = f"{self.steps_done:07d}"
        for steps in self.eval_steps():
            gt, pred = self.strips(n, steps)
            if steps == self.cfg.denoising_steps:
                written["strip"] = save_strip(gt, pred, self.context, media / f"prediction_strip_{tag}.png")
                written["video"] = save_video(gt, pred, self.context, media / f"prediction_{tag}")
            else:
                written[f"strip_steps{steps}"] = save_strip(
                    gt, pred, self.context, media / f"prediction_strip_steps{steps}_{tag}.png")
        return record_media(out_dir, logger, self.steps_done, written, self.last_eval)

    # --------------------------------------------------------------------------------------- checkpoint
    def state_dict(self, *args, **kwargs):
        return {
            "net": super().state_dict(*args, **kwargs),
            "opt": self.opt.state_dict(),
            "train_time": self.train_time,
            "train_windows": self.train_windows,
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state, strict: bool = True):
        super().load_state_dict(state["net"], strict=strict)
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))  # never share moment tensors
        self.train_time = state.get("train_time", 0.0)
        self.train_windows = state.get("train_windows", 0)
        self.steps_done = state.get("steps_done", 0)
