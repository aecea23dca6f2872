"""model=cswm: Contrastively-trained Structured World Models (C-SWM, Kipf et al. 2020, "Contrastive Learning of
Structured World Models") on rendered physics (data=physics_frames), trained by the supervised loop; with
``loss=reconstruction``, the same networks trained through a decoder instead: the reconstruction-based world
model C-SWM is compared with.

An observation is two stacked RGB frames, (B, 6, H, W) in [0, 1] (velocity is visible in it). Networks (the
paper's "medium" encoder, used for its 3-body physics):
- object extractor, a CNN: conv ``kernel`` x ``kernel`` to ``channels`` -> BatchNorm -> LeakyReLU -> conv
  ``patch`` x ``patch`` with stride ``patch`` to K = ``objects`` maps -> sigmoid: K object masks
  (B, K, H/patch, W/patch). Slot k is whatever channel k of the CNN learns to pick out (one body each, ideally).
- object encoder, an MLP shared by the slots: each flattened mask -> z_k, (B, K, ``embedding``).
- transition, a GNN over the K slots: an edge MLP on [z_i, z_j] for every ordered pair i != j, summed per
  receiver i, then a node MLP on [z_i, sum_j e_ij] -> dz_i; the next state is z + dz, (B, K, embedding).
  Permuting the slots permutes its output (tests/models/test_cswm.py checks it). No actions: physics has none.
The MLPs are wm.core.nets.mlp with two hidden layers of ``hidden`` units, LayerNorm and ReLU (C-SWM's have
LayerNorm before the second ReLU only).

Losses, per training transition (obs_t, obs_t+1) of data.transition_batch:
- ``contrastive`` (C-SWM): with the energy d(z, z') = mean over slots k of ||z_k - z'_k||^2 / (2 sigma^2),
      L = d(z_t + T(z_t), z_t+1) + max(0, margin - d(z~, z_t+1)),
  z~ the encoding of another observation of the batch (for sample i, sample (i + r) mod B with r uniform in
  [1, B - 1]: never itself), margin gamma = 1, sigma = 0.5 (the paper's; its code compares z~ with z_t
  instead of z_t+1). Nothing is decoded: the hinge alone keeps the states of different scenes apart.
- ``reconstruction`` (the paper's "w/o contrastive loss" ablation, its code's ``--decoder``; an auto-encoder
  world model with C-SWM's encoder and transition): a decoder maps the K states back to the observation
  (a per-slot MLP to a (H/patch, W/patch) map, the K maps as channels -> transposed conv ``patch`` x ``patch``
  stride ``patch`` -> BatchNorm -> ReLU -> conv ``kernel`` x ``kernel`` to 6 logits) and
      L = BCE(dec(z_t), obs_t) + BCE(dec(z_t + T(z_t)), obs_t+1)
  summed over pixels and channels, averaged over the batch: the transition learns through pixels only.

Evaluation (the paper's): for each k of ``steps``, every test episode's obs_0 is encoded and the transition
applied k times; the prediction is ranked against the encodings of obs_k of every test episode (squared
Euclidean distance of the flattened K x embedding states). rank = 1 + the number of other episodes' targets
strictly closer than the true one (a tie counts for the truth, as in C-SWM's code). Keys: ``eval/hits1_<k>``
(fraction ranked first), ``eval/mrr_<k>`` (mean of 1 / rank), the same with ``_no_transition`` (the encoding
of obs_0 itself ranked against the targets: what the transition adds), and ``eval/ranking_set_size``
(the number of test episodes, data.test: chance Hits@1 is 1 / that). C-SWM's code ranks the other way round
(each target against all predictions); the metrics are defined the same way otherwise. On data=physics_frames'
defaults 10 steps ahead is hard from pixels at all: the true simulator started from positions off by 0.3 px
ranks only 15% first at k = 10 (bench.cswm's ``reference``).
``artifacts`` writes media/objects_<step>.png: test frames and the K masks the extractor gives them (and the
decoder's frames with loss=reconstruction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import POSITIVE, check_tree, param, require
from wm.core.nets import SavesOptimizers, mlp, optimize
from wm.core.schedule import cosine_lr
from wm.core.seeds import CSWM_STREAM
from wm.data.physics_frames import PhysicsFrames

EVAL_CHUNK = 250  # observations encoded at once in evaluation


def ranking(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Hits@1 and MRR of N predictions (N, D), prediction i's true target being target i of (N, D), ranked
    among all N targets by squared Euclidean distance; ties count for the true target."""
    d = torch.cdist(pred.double(), target.double(), compute_mode="donot_use_mm_for_euclid_dist")  # exact
    rank = 1 + (d < d.diagonal()[:, None]).sum(1)  # the true target is never strictly closer than itself
    return float((rank == 1).double().mean()), float((1.0 / rank.double()).mean())


class GNNTransition(nn.Module):
    """(B, K, e) object states -> (B, K, e) changes: edge MLP on every ordered pair, summed per receiver, node MLP."""

    def __init__(self, embedding: int, hidden: int):
        super().__init__()
        self.edge = mlp(2 * embedding, hidden, hidden, 2, norm=True, act=nn.ReLU)
        self.node = mlp(embedding + hidden, embedding, hidden, 2, norm=True, act=nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, K, _ = z.shape
        off = ~torch.eye(K, dtype=torch.bool, device=z.device)
        recv, send = off.nonzero(as_tuple=True)  # the K (K - 1) ordered pairs, grouped by receiver
        messages = self.edge(torch.cat([z[:, recv], z[:, send]], -1))  # (B, K (K - 1), hidden)
        total = messages.reshape(B, K, K - 1, messages.shape[-1]).sum(2)  # (B, K, hidden) per receiver (K = 1: 0)
        return self.node(torch.cat([z, total], -1))


class CSWM(SavesOptimizers, nn.Module):
    """model=cswm (module docstring): C-SWM or, with ``loss=reconstruction``, its decoder-trained counterpart."""

    loop = "supervised"
    datasets = ("physics_frames",)
    OPTIMIZERS: ClassVar[dict[str, str]] = {"optimizer": "opt"}

    @dataclass
    class Config:
        name: str = param("cswm", free="the option's name")
        loss: str = param("contrastive", choices=("contrastive", "reconstruction"))
        objects: int = param(3, gt=0)  # K object slots (C-SWM: the number of bodies)
        embedding: int = param(4, gt=0)  # per slot (C-SWM's physics: 4, position and velocity in 2-D)
        hidden: int = param(512, gt=0)  # MLP width (encoder, edge, node, decoder)
        channels: int = param(32, gt=0)  # the extractor's hidden conv channels
        kernel: int = param(9, gt=0)  # the extractor's first conv (odd; C-SWM: 9)
        patch: int = param(5, gt=0)  # mask cell: kernel and stride of the second conv (must divide data.size)
        sigma: float = param(0.5, gt=0)  # energy scale: d = ||dz||^2 / (2 sigma^2)
        margin: float = param(1.0, gt=0)  # hinge gamma on the negatives' energy
        batch: int = param(1024, ge=2)  # transitions per step (C-SWM: 1024); each needs another as its negative
        lr: float = param(5e-4, gt=0)  # C-SWM: 5e-4
        lr_decay_steps: int = param(0, ge=0)  # cosine decay of lr to 0 over this many steps (0: constant lr)
        steps: list[int] = param([1, 5, 10], each=POSITIVE, nonempty=True)  # k of hits1_<k>, mrr_<k>
        examples: int = param(4, ge=0)  # test observations drawn in media/objects_<step>.png

        def check(self) -> None:
            require(self.kernel % 2 == 1, "kernel", f"must be odd (got {self.kernel})")

    @classmethod
    def refuse(cls, plan) -> str | None:
        if plan.data_cls is None or not issubclass(plan.data_cls, PhysicsFrames):
            return f"model={plan.model.name} learns from stacked physics frames; valid data: {', '.join(cls.datasets)}"
        m, d = plan.model, plan.data
        if max(m.steps) > d.length - 1:
            return (f"model.steps={list(m.steps)}: obs_{max(m.steps)} needs frame {max(m.steps) + 1}, episodes hold "
                    f"frames 0..{d.length} (raise data.length to {max(m.steps) + 1})")
        if d.size % m.patch:
            return f"model.patch={m.patch} must divide the frame size data.size={d.size}"
        return None

    def __init__(self, cfg: CSWM.Config, data: PhysicsFrames, device: torch.device | str = "cpu"):
        super().__init__()
        check_tree(cfg, "model")
        self.cfg, self.data, self.device = cfg, data, torch.device(device)
        self.steps_done = 0
        K, e, C = cfg.objects, cfg.embedding, 2 * data.channels
        self.cells = (data.size // cfg.patch) ** 2
        self.extractor = nn.Sequential(
            nn.Conv2d(C, cfg.channels, cfg.kernel, padding=cfg.kernel // 2), nn.BatchNorm2d(cfg.channels),
            nn.LeakyReLU(), nn.Conv2d(cfg.channels, K, cfg.patch, stride=cfg.patch), nn.Sigmoid())
        self.encoder = mlp(self.cells, e, cfg.hidden, 2, norm=True, act=nn.ReLU)
        self.transition = GNNTransition(e, cfg.hidden)
        if cfg.loss == "reconstruction":
            self.decoder_mlp = mlp(e, self.cells, cfg.hidden, 2, norm=True, act=nn.ReLU)
            self.decoder_cnn = nn.Sequential(
                nn.ConvTranspose2d(K, cfg.channels, cfg.patch, stride=cfg.patch), nn.BatchNorm2d(cfg.channels),
                nn.ReLU(), nn.Conv2d(cfg.channels, C, cfg.kernel, padding=cfg.kernel // 2))
        self.to(self.device)
        self.opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)
        self.shown: dict[str, np.ndarray] = {}  # what the last evaluation drew (artifacts)

    # ---- the model -------------------------------------------------------------------------------------
    def masks(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, 6, H, W) uint8 observations -> (B, K, H/patch, W/patch) object masks in (0, 1)."""
        return self.extractor(obs.to(self.device).float() / 255)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, 6, H, W) uint8 observations -> (B, K, embedding) object states."""
        return self.encoder(self.masks(obs).flatten(2))

    def predict(self, z: torch.Tensor, k: int = 1) -> torch.Tensor:
        """(B, K, embedding) states -> the states k steps later (the transition applied k times)."""
        for _ in range(k):
            z = z + self.transition(z)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, K, embedding) states -> (B, 6, H, W) logits of the observation (loss=reconstruction only)."""
        side = self.data.size // self.cfg.patch
        maps = self.decoder_mlp(z).reshape(len(z), self.cfg.objects, side, side)
        return self.decoder_cnn(maps)

    def energy(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, K, e) x (B, K, e) -> (B,): mean over slots of ||z_k - target_k||^2 / (2 sigma^2)."""
        return (z - target).square().sum(-1).mean(-1) / (2 * self.cfg.sigma**2)

    # ---- training --------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return cosine_lr(self.cfg.lr, step, self.cfg.lr_decay_steps)

    def train_step(self, step: int) -> dict[str, float]:
        rng = np.random.default_rng([self.data.seed, CSWM_STREAM, step])
        b = self.data.transition_batch(rng, self.cfg.batch)
        if self.cfg.loss == "contrastive":
            B = len(b["obs"])
            z, z_next = self.encode(torch.cat([b["obs"], b["next_obs"]])).split(B)  # one BatchNorm batch
            positive = self.energy(self.predict(z), z_next).mean()
            other = torch.as_tensor((np.arange(B) + rng.integers(1, B, B)) % B, device=self.device)
            negative = F.relu(self.cfg.margin - self.energy(z[other], z_next)).mean()
            loss, stats = positive + negative, {"train/positive": positive.item(), "train/negative": negative.item()}
        else:
            obs, nxt = (b[k].to(self.device).float() / 255 for k in ("obs", "next_obs"))
            z = self.encode(b["obs"])
            now = F.binary_cross_entropy_with_logits(self.decode(z), obs, reduction="sum") / len(obs)
            later = F.binary_cross_entropy_with_logits(self.decode(self.predict(z)), nxt, reduction="sum") / len(obs)
            loss, stats = now + later, {"train/reconstruction": now.item(), "train/prediction": later.item()}
        optimize(self.opt, loss, self.lr_at(step))
        self.steps_done = step + 1
        return {"train/loss": loss.item(), **stats}

    # ---- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_all(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, 6, H, W) uint8 -> (N, K, embedding), EVAL_CHUNK observations at a time."""
        return torch.cat([self.encode(obs[i: i + EVAL_CHUNK]) for i in range(0, len(obs), EVAL_CHUNK)])

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.eval()
        first = self.data.pairs(0)[0]  # obs_0 of every test episode
        start = self.encode_all(first)
        out: dict[str, float] = {}
        for k in self.cfg.steps:
            target = self.encode_all(self.data.pairs(k)[1]).flatten(1)
            out[f"eval/hits1_{k}"], out[f"eval/mrr_{k}"] = ranking(self.predict(start, k).flatten(1), target)
            out[f"eval/hits1_{k}_no_transition"], out[f"eval/mrr_{k}_no_transition"] = ranking(start.flatten(1), target)
        out["eval/ranking_set_size"] = len(start)
        n = self.cfg.examples
        if n:
            obs = first[:n]
            self.shown = {"frames": obs[:, 3:].numpy(), "masks": self.masks(obs).cpu().numpy()}
            if self.cfg.loss == "reconstruction":
                self.shown["decoded"] = (torch.sigmoid(self.decode(self.encode(obs)))[:, 3:] * 255).byte().cpu().numpy()
        self.train()
        return out

    def artifacts(self, out_dir: Path, logger: Any = None) -> dict[str, Path]:
        """media/objects_<step>.png: per test observation, its second frame, the K object masks and (with
        loss=reconstruction) the decoded frame, from the last ``evaluate``."""
        if not self.shown:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        frames, masks, decoded = self.shown["frames"], self.shown["masks"], self.shown.get("decoded")
        n, K = masks.shape[:2]
        cols = 1 + K + (decoded is not None)
        fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
        for i in range(n):
            row = [(frames[i].transpose(1, 2, 0), "frame")]
            row += [(masks[i, k], f"slot {k}") for k in range(K)]
            if decoded is not None:
                row.append((decoded[i].transpose(1, 2, 0), "decoded"))
            for ax, (img, title) in zip(axes[i], row):
                if img.ndim == 2:
                    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(img)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(title, fontsize=8)
        fig.suptitle(f"{self.cfg.name} ({self.cfg.loss}): object masks, step {self.steps_done}", fontsize=9)
        fig.tight_layout()
        media = Path(out_dir) / "media"
        media.mkdir(parents=True, exist_ok=True)
        path = media / f"objects_{self.steps_done:07d}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        if logger is not None:
            logger.log_file("media/objects", path, "image", self.steps_done)
        return {"objects": path}
