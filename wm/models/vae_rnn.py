"""World Models (Ha & Schmidhuber 2018): a ConvVAE (V) compresses each 64x64 frame to z, an MDN-RNN (M)
predicts p(z_{t+1} | z_t, a_t, h_t) as a mixture of Gaussians, and a small controller (C, wm/agents/cmaes.py)
acts on [z, h]. Trained by the evolution loop (wm/loops/evolution.py) in stages: random rollouts -> V -> M -> C.

Shapes: frames (B, 3, 64, 64) float in [0, 1]; z (B, latent); actions (B, A) (one-hot for discrete);
M's state (h, c) each (B, hidden). The model holds no dataset: the loop passes its rollouts (a FrameDataset) to
``train_vae_step`` / ``train_rnn_step`` / ``encode_dataset``; the steps draw their batch from a numpy generator
seeded by (seed, stage, step), so a stage resumed from a checkpoint continues exactly.

Paper architecture: V's encoder is 4 stride-2 4x4 convs (32, 64, 128, 256 channels, ReLU) -> 1024 -> mu, logvar
(z = 32); the decoder is a dense layer to 1024 then 4 stride-2 deconvs (5, 5, 6, 6 kernels; 128, 64, 32, 3
channels; sigmoid). Loss: L2 reconstruction summed over pixels + KL with "free bits" max(KL, kl_tolerance * z)
per sample, then the batch mean (as the paper's code).
M is an LSTM with 256 units and 5 mixtures per latent dimension; sampling with temperature tau divides the
mixture logits by tau and scales the std by sqrt(tau). Optional reward and done heads make dreaming possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import distributions as D
from torch import nn

from wm.config import param
from wm.core.seeds import RNN_STREAM, VAE_STREAM
from wm.data.rollouts import FrameDataset, action_size
from wm.models.base import WorldModel


@dataclass
class BudgetConfig:
    """Shares of ``total_steps`` (real env steps) per stage that acts in the env; normalised to sum to 1."""

    rollouts: float = param(0.5, gt=0)
    controller: float = param(0.5, ge=0)


@dataclass
class RolloutConfig:
    workers: int = param(2, gt=0)  # envs stepped in parallel processes (AsyncVectorEnv) while collecting
    max_episodes: int = param(10000, gt=0)  # the paper's 10,000 random rollouts; the step budget usually ends first
    dt: float = param(0.05, gt=0)  # brownian random policy: a += sqrt(dt) * N(0, 1)
    # probability per step of a fresh uniform action (discrete: hold ~1/resample)
    resample: float = param(0.05, ge=0, le=1)


@dataclass
class VAEConfig:
    epochs: float = param(1.0, gt=0)  # passes over the collected frames (the paper: 1 epoch over 10M frames)
    min_steps: int = param(20, ge=0)
    max_steps: int = param(0, ge=0)  # 0: no cap on the optimizer steps that epochs ask for
    batch: int = param(32, gt=0)
    lr: float = param(1e-4, gt=0)
    kl_tolerance: float = param(0.5, ge=0)  # free bits: a sample's KL below kl_tolerance * latent is free


@dataclass
class RNNConfig:
    hidden: int = param(256, gt=0)
    mixtures: int = param(5, gt=0)
    epochs: float = param(20.0, gt=0)  # passes over the collected steps (the paper: 20 epochs)
    min_steps: int = param(20, ge=0)
    max_steps: int = param(0, ge=0)
    batch: int = param(16, gt=0)
    seq_len: int = param(64, gt=0)
    lr: float = param(1e-3, gt=0)
    grad_clip: float = param(1.0, gt=0)
    temperature: float = param(1.0, gt=0)  # tau for sampling dreams
    reward_head: bool = True
    done_head: bool = True


@dataclass
class StagesConfig:
    """Take a stage's product from an earlier run dir instead of making it (its env steps are then not spent
    here). ``mdnrnn_from`` also takes that run's VAE unless ``vae_from`` is set."""

    rollouts_from: Optional[str] = param(None, free="a run dir, checked by refuse")
    vae_from: Optional[str] = param(None, free="a run dir, checked by refuse")
    mdnrnn_from: Optional[str] = param(None, free="a run dir, checked by refuse")


@dataclass
class VAERNNConfig:
    latent: int = param(32, gt=0)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    rollouts: RolloutConfig = field(default_factory=RolloutConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    rnn: RNNConfig = field(default_factory=RNNConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    stage_checkpoint_every: int = param(200, gt=0)  # optimizer steps between checkpoints inside V and M


def capped(steps: int, cap: int) -> int:
    return min(steps, cap) if cap else steps


class ConvVAE(nn.Module):
    def __init__(self, latent: int = 32, channels: int = 3):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2), nn.ReLU(), nn.Conv2d(128, 256, 4, 2), nn.ReLU(), nn.Flatten(),
        )
        self.mu, self.logvar = nn.Linear(1024, latent), nn.Linear(1024, latent)
        self.dec_in = nn.Linear(latent, 1024)
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(), nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(), nn.ConvTranspose2d(32, channels, 6, 2), nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.mu(h), self.logvar(h).clamp(-8, 8)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(self.dec_in(z)[..., None, None])

    def loss(self, x: torch.Tensor, kl_tolerance: float) -> tuple[torch.Tensor, dict[str, float]]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = self.decode(z)
        rec = ((recon - x) ** 2).flatten(1).sum(1).mean()
        kl = kl_per_sample(mu, logvar)
        loss = rec + free_bits(kl, kl_tolerance * self.latent)
        return loss, {"vae/loss": loss.item(), "vae/recon": rec.item(), "vae/kl": kl.mean().item()}


def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) of each sample (B,), summed over the latent dimensions."""
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)


def free_bits(kl: torch.Tensor, floor: float) -> torch.Tensor:
    """The paper's KL term: max(KL, floor) per sample, then the batch mean, so a sample below the floor gets no
    KL gradient while the others still do (a floor on the batch mean would ignore the spread)."""
    return torch.clamp(kl, min=floor).mean()


class MDNRNN(nn.Module):
    """LSTM over [z_t, a_t]; a Gaussian mixture over each dimension of z_{t+1}; optional reward / done heads."""

    def __init__(self, latent: int, actions: int, hidden: int, mixtures: int, reward_head: bool, done_head: bool):
        super().__init__()
        self.latent, self.hidden, self.k = latent, hidden, mixtures
        self.lstm = nn.LSTM(latent + actions, hidden, batch_first=True)
        self.mdn = nn.Linear(hidden, 3 * mixtures * latent)
        self.reward = nn.Linear(hidden, 1) if reward_head else None
        self.done = nn.Linear(hidden, 1) if done_head else None

    def mixture(self, out: torch.Tensor, tau: float = 1.0) -> D.MixtureSameFamily:
        logits, mu, log_sigma = rearrange(self.mdn(out), "... (p z k) -> p ... z k", p=3, k=self.k)
        sigma = log_sigma.clamp(-7, 3).exp() * math.sqrt(tau)
        return D.MixtureSameFamily(D.Categorical(logits=logits / tau), D.Normal(mu, sigma))

    def forward(self, z: torch.Tensor, a: torch.Tensor, state=None):
        """z (B, T, latent), a (B, T, A) -> LSTM outputs (B, T, hidden) and the new (h, c)."""
        out, state = self.lstm(torch.cat([z, a], -1), state)
        return out, state

    def step(self, z: torch.Tensor, a: torch.Tensor, state):
        """One step for a batch: z (B, latent), a (B, A) -> (h (B, hidden), (h, c))."""
        out, state = self.lstm(torch.cat([z, a], -1)[:, None], state)
        return out[:, 0], state

    def initial_state(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        zero = torch.zeros(1, n, self.hidden, device=device)
        return zero, zero.clone()

    def loss(self, z, a, reward, done, mask) -> tuple[torch.Tensor, dict[str, float]]:
        """Sequences (B, T+1, latent), actions (B, T, A), reward/done (B, T), mask (B, T) of valid steps."""
        out, _ = self(z[:, :-1], a)
        nll = -self.mixture(out).log_prob(z[:, 1:]).sum(-1)  # (B, T): independent mixtures per dimension
        n = mask.sum().clamp(min=1)
        z_loss = (nll * mask).sum() / n / self.latent
        loss, logs = z_loss, {"rnn/z_nll": z_loss.item()}
        if self.reward is not None:
            r_loss = ((self.reward(out)[..., 0] - reward) ** 2 * mask).sum() / n
            loss, logs["rnn/reward_mse"] = loss + r_loss, r_loss.item()
        if self.done is not None:
            d_loss = (F.binary_cross_entropy_with_logits(self.done(out)[..., 0], done, reduction="none")
                      * mask).sum() / n
            loss, logs["rnn/done_bce"] = loss + d_loss, d_loss.item()
        logs["rnn/loss"] = loss.item()
        return loss, logs


class VAERNN(WorldModel):
    """V + M of World Models, with the stage training steps the evolution loop calls."""

    loop = "evolution"
    Config = VAERNNConfig

    def __init__(self, cfg: VAERNNConfig, obs_space: gym.Space, act_space: gym.Space, device: torch.device):
        super().__init__()
        self.cfg, self.obs_space, self.act_space, self.device = cfg, obs_space, act_space, device
        self.actions = action_size(act_space)
        self.vae = ConvVAE(cfg.latent, obs_space.shape[-1]).to(device)
        r = cfg.rnn
        self.rnn = MDNRNN(cfg.latent, self.actions, r.hidden, r.mixtures, r.reward_head, r.done_head).to(device)
        self.vae_opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae.lr)
        self.rnn_opt = torch.optim.Adam(self.rnn.parameters(), lr=cfg.rnn.lr)
        self.latents: list[dict[str, np.ndarray]] | None = None  # per stored episode, set by encode_dataset

    @classmethod
    def check_spaces(cls, obs_space: gym.Space, act_space: gym.Space) -> str | None:
        if not (isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) == 3
                and obs_space.shape[:2] == (64, 64)):
            return (f"model=vae_rnn needs 64x64 RGB pixel observations (env.pixels=true env.size=64), "
                    f"got {obs_space}")
        if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
            return f"model=vae_rnn takes Box or Discrete actions, got {act_space}"
        return None

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_spaces(*plan.spaces) or cls.check_stages(plan.model)

    @classmethod
    def check_stages(cls, cfg: VAERNNConfig) -> str | None:
        """Products taken from earlier runs must be there."""
        need = {"rollouts_from": "stages/rollouts.json", "vae_from": "vae.pt", "mdnrnn_from": "mdnrnn.pt"}
        for key, rel in need.items():
            src = getattr(cfg.stages, key)
            if src is not None and not (Path(src) / rel).exists():
                return f"model.stages.{key}={src}: {Path(src) / rel} does not exist (not a finished run dir?)"
        return None

    # ---- frames -----------------------------------------------------------------------------------------
    def to_input(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) -> float (B, C, H, W) in [0, 1] on the device."""
        x = torch.as_tensor(frames, device=self.device)
        return rearrange(x, "b h w c -> b c h w").float().div_(255.0)

    @torch.no_grad()
    def encode(self, frames: np.ndarray, noise: torch.Tensor | None = None) -> torch.Tensor:
        """z of frames (B, H, W, C): mu, or mu + sigma * noise given standard normal noise (B, latent)."""
        mu, logvar = self.vae.encode(self.to_input(frames))
        return mu if noise is None else mu + noise * (0.5 * logvar).exp()

    # ---- stage 2: V ---------------------------------------------------------------------------------------
    def vae_steps(self, frames: int) -> int:
        v = self.cfg.vae
        return capped(max(v.min_steps, math.ceil(v.epochs * frames / v.batch)), v.max_steps)

    def train_vae_step(self, data: FrameDataset, seed: int, step: int) -> dict[str, float]:
        """One optimizer step of V on a minibatch of ``data.frames``."""
        rng = np.random.default_rng([seed, VAE_STREAM, step])
        idx = rng.integers(len(data.frames), size=self.cfg.vae.batch)
        loss, logs = self.vae.loss(self.to_input(data.frames[idx]), self.cfg.vae.kl_tolerance)
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_opt.step()
        return logs

    @torch.no_grad()
    def reconstructions(self, data: FrameDataset, n: int = 8) -> np.ndarray:
        """An image: n evenly spaced frames of ``data`` (top row) and their reconstructions from mu (bottom)."""
        idx = np.linspace(0, len(data.frames) - 1, n).astype(int)
        x = data.frames[idx]
        rec = self.vae.decode(self.encode(x)).clamp(0, 1).mul(255).byte()
        rec = rearrange(rec, "b c h w -> b h w c").cpu().numpy()
        return np.concatenate([np.concatenate(list(x), 1), np.concatenate(list(rec), 1)], 0)

    # ---- stage 3: M ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_dataset(self, data: FrameDataset, batch: int = 256) -> None:
        """mu and logvar of every frame of ``data``, per episode, kept as ``latents``: M trains on z sampled from
        them (as the paper), and dreams start from their first frames."""
        self.latents = []
        for ep in data.episodes:
            parts = [self.vae.encode(self.to_input(ep["obs"][i:i + batch])) for i in range(0, len(ep["obs"]), batch)]
            mu = torch.cat([p[0] for p in parts]).cpu().numpy()
            logvar = torch.cat([p[1] for p in parts]).cpu().numpy()
            self.latents.append({"mu": mu, "logvar": logvar})

    def rnn_steps(self, steps: int) -> int:
        r = self.cfg.rnn
        return capped(max(r.min_steps, math.ceil(r.epochs * steps / (r.batch * r.seq_len))), r.max_steps)

    def train_rnn_step(self, data: FrameDataset, seed: int, step: int) -> dict[str, float]:
        """One optimizer step of M on sequences of ``data``'s episodes (z from ``latents``: encode_dataset first)."""
        r = self.cfg.rnn
        rng = np.random.default_rng([seed, RNN_STREAM, step])
        L = r.seq_len
        z = np.zeros((r.batch, L + 1, self.cfg.latent), np.float32)
        a = np.zeros((r.batch, L, self.actions), np.float32)
        rew, done, mask = (np.zeros((r.batch, L), np.float32) for _ in range(3))
        lengths = np.array([len(e["action"]) for e in data.episodes])
        for b, e in enumerate(rng.choice(len(lengths), size=r.batch, p=lengths / lengths.sum())):
            ep, lat = data.episodes[e], self.latents[e]
            start = int(rng.integers(max(1, lengths[e] - L + 1)))
            n = min(L, lengths[e] - start)
            mu, logvar = lat["mu"][start:start + n + 1], lat["logvar"][start:start + n + 1]
            z[b, :n + 1] = mu + rng.standard_normal(mu.shape).astype(np.float32) * np.exp(0.5 * logvar)
            a[b, :n] = ep["action"][start:start + n]
            rew[b, :n], done[b, :n], mask[b, :n] = ep["reward"][start:start + n], ep["done"][start:start + n], 1
        loss, logs = self.rnn.loss(*(torch.as_tensor(v, device=self.device) for v in (z, a, rew, done, mask)))
        self.rnn_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.rnn.parameters(), r.grad_clip)
        self.rnn_opt.step()
        return logs

    def initial_latents(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """z of n first frames of stored episodes (where dreams start)."""
        eps = rng.integers(len(self.latents), size=n)
        mu = np.stack([self.latents[e]["mu"][0] for e in eps])
        logvar = np.stack([self.latents[e]["logvar"][0] for e in eps])
        z = mu + rng.standard_normal(mu.shape).astype(np.float32) * np.exp(0.5 * logvar)
        return torch.as_tensor(z, device=self.device)

    @torch.no_grad()
    def dream_step(self, z: torch.Tensor, a: torch.Tensor, state, tau: float, gen: torch.Generator | None = None):
        """One imagined step for a batch: sample z' ~ M(z, a, h) at temperature tau; reward and done from the
        heads (done: sampled Bernoulli). Returns z', reward (B,), done (B,) bool, new state, h (B, hidden)."""
        h, state = self.rnn.step(z, a, state)
        mix = self.rnn.mixture(h, tau)
        comp = torch.multinomial(mix.mixture_distribution.probs.reshape(-1, self.rnn.k), 1, generator=gen)
        comp = comp.reshape(*h.shape[:1], self.cfg.latent, 1)
        mu = mix.component_distribution.loc.gather(-1, comp)[..., 0]
        sigma = mix.component_distribution.scale.gather(-1, comp)[..., 0]
        z_next = mu + sigma * torch.randn(mu.shape, generator=gen, device=mu.device)
        reward = self.rnn.reward(h)[:, 0] if self.rnn.reward is not None else torch.zeros(len(h), device=h.device)
        if self.rnn.done is not None:
            p = torch.sigmoid(self.rnn.done(h)[:, 0])
            done = torch.rand(p.shape, generator=gen, device=p.device) < p
        else:
            done = torch.zeros(len(h), dtype=torch.bool, device=h.device)
        return z_next, reward, done, state, state[0][0]

    @torch.no_grad()
    def decode_frames(self, z: torch.Tensor) -> np.ndarray:
        return rearrange(self.vae.decode(z).clamp(0, 1).mul(255).byte(), "b c h w -> b h w c").cpu().numpy()

    # ---- products -----------------------------------------------------------------------------------------
    def vae_state(self) -> dict:
        return {"vae": self.vae.state_dict(), "opt": self.vae_opt.state_dict()}

    def load_vae_state(self, st: dict) -> None:
        self.vae.load_state_dict(st["vae"])
        self.vae_opt.load_state_dict(st["opt"])

    def rnn_state(self) -> dict:
        return {"rnn": self.rnn.state_dict(), "opt": self.rnn_opt.state_dict()}

    def load_rnn_state(self, st: dict) -> None:
        self.rnn.load_state_dict(st["rnn"])
        self.rnn_opt.load_state_dict(st["opt"])
