"""Recurrent State-Space Model world model: PlaNet, DreamerV1, V2 and V3 behind config switches.

State per env: deter (GRU hidden, D) and stoch (flattened latent, S). feat = [deter, stoch].
Rows follow the DreamerV3 format: row t holds obs_t, the action that led to obs_t, the reward received on
arriving at obs_t, is_first (obs_t starts an episode) and is_terminal (obs_t ends one without bootstrap).
So with h_t = GRU(h_{t-1}, [z_{t-1}, a_t]) the prior p(z_t | h_t) and posterior q(z_t | h_t, e(obs_t)) are
both for step t, the decoder reconstructs obs_t, the reward head predicts reward_t and the continue head
predicts 1 - is_terminal_t. At is_first rows the state and the incoming action are reset to zero.

Shapes: sequences (B, L, ...), flat states (N, ...). Imagination lives in the agents (actor_critic, cem),
which use `img_step`, `feat` and the heads here.

Observations are a vector, an image, or a Dict of both (wm/envs/modalities.py: images + vectors with presence
flags): then a CNN per image key and an MLP per vector key feed one embedding and each of ``decode_keys`` has
its own decoder and loss scale (wm/models/multimodal.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import param
from wm.core.nets import SavesOptimizers, adam, mlp
from wm.core.schedule import Schedule
from wm.data.replay import tree_map
from wm.models import dists, multimodal
from wm.models.base import WorldModel
from wm.models.nets import ActionCoder, ConvDecoder, ConvEncoder, NormGRUCell, zero_last

State = dict[str, torch.Tensor]


def action_dim(act_space: gym.Space) -> int:
    return int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else int(np.prod(act_space.shape))


def is_image_space(obs_space: gym.Space) -> bool:
    return not isinstance(obs_space, gym.spaces.Dict) and len(obs_space.shape) == 3


@dataclass
class Posteriors:
    """What the world model offers an agent that learns in imagination after each update: the update's
    sequences ``batch`` (B, L, ...), their posterior states ``states`` (deter (B, L, D), stoch (B, L, S),
    detached) and ``cont`` (B, L) = 1 - is_terminal. Imagination starts from them (``starts``) and rolls
    forward with ``RSSM.img_step``; Plan2Explore's ensemble trains on them."""

    batch: dict[str, torch.Tensor]
    states: State
    cont: torch.Tensor

    def starts(self) -> tuple[State, torch.Tensor]:
        """The B*L start states, flat: ({deter (N, D), stoch (N, S)}, cont (N,))."""
        flat = {k: self.states[k].reshape(-1, self.states[k].shape[-1]) for k in ("deter", "stoch")}
        return flat, self.cont.reshape(-1)


class RSSM(SavesOptimizers, WorldModel):
    """World model: encoder, RSSM core (GRU + stochastic latent), decoder, reward and continue heads."""

    loop = "online"
    dict_obs = True  # takes Dict observations (images + vectors); wm.validate refuses them to the parts without this
    OPTIMIZERS: ClassVar[dict[str, str]] = {"_optimizer": "opt"}  # checkpoints carry it (SavesOptimizers)

    @dataclass
    class Config:
        name: str = param("rssm", free="the option's name")
        update: Schedule = field(default_factory=lambda: Schedule(every=8, updates=1, start=500))
        batch: int = param(16, gt=0)  # sequences per update
        length: int = param(32, ge=2)  # steps per sequence
        deter: int = param(128, gt=0)  # GRU size
        hidden: int = param(64, gt=0)  # width of the GRU input and the prior/posterior MLPs
        gru: str = param("torch", choices=("torch", "norm"))  # torch.nn.GRUCell, or DreamerV2/V3's LayerNorm GRU
        latent: str = param("categorical", choices=("categorical", "gaussian"))  # DreamerV2/V3 | PlaNet/DreamerV1
        groups: int = param(8, gt=0)  # categorical: number of categorical variables
        classes: int = param(8, ge=2)  # categorical: classes per variable
        stoch: int = param(32, gt=0)  # gaussian: latent dims
        min_std: float = param(0.1, gt=0)  # gaussian: std floor
        unimix: float = param(0.01, ge=0, lt=1)  # categorical: uniform mix (DreamerV3); 0 for V2
        units: int = param(64, gt=0)  # encoder/decoder/head MLP width
        layers: int = param(2, gt=0)  # encoder/decoder/head MLP depth
        cnn_depth: int = param(16, gt=0)  # pixel encoder/decoder base channels
        symlog_obs: bool = True  # vector obs: symlog inputs and symlog-MSE reconstruction (V3)
        reward_head: str = param("symlog_mse", choices=dists.HEADS)  # twohot: V3 paper, 255 symlog bins; twohot_raw: no symlog
        kl_balance: bool = True  # split KL into dynamics and representation terms (V2/V3)
        dyn_scale: float = param(0.5, ge=0)  # balanced: weight of KL(sg(post) || prior)
        rep_scale: float = param(0.1, ge=0)  # balanced: weight of KL(post || sg(prior))
        kl_scale: float = param(1.0, ge=0)  # unbalanced: weight of KL(post || prior)
        free_bits: float = param(1.0, ge=0)  # nats below which each KL term is not minimised (PlaNet: 3)
        obs_scale: float = param(1.0, ge=0)
        reward_scale: float = param(1.0, ge=0)
        cont_scale: float = param(1.0, ge=0)
        lr: float = param(1e-3, gt=0)
        eps: float = param(1e-8, gt=0)
        grad_clip: float = param(1000.0, gt=0)
        video: bool = True  # pixel envs: open-loop video (real | imagined | error) after each evaluation
        terminal_weight: float = param(1.0, gt=0)  # continue loss weight of terminal rows (1: the papers)
        # share of each batch's sequences drawn to hold a terminal row (0: uniform, as the papers): a terminal
        # seen a handful of times (CartPole's cart leaving the track) then reaches the continue head every update
        terminal_share: float = param(0.0, ge=0, le=1)
        # Dict observations (images + vectors): the keys encoded and the keys reconstructed ([]: every one), and
        # the reconstruction loss scale of image and of vector keys (DreamerV3: 1 each)
        encode_keys: list[str] = param([], free="observation keys, checked against the env's")
        decode_keys: list[str] = param([], free="observation keys, checked against the env's")
        image_scale: float = param(1.0, ge=0)
        vector_scale: float = param(1.0, ge=0)

    @classmethod
    def refuse(cls, plan) -> str | None:
        obs = plan.spaces[0] if plan.spaces else None
        c = plan.model
        if not isinstance(obs, gym.spaces.Dict):
            if c.encode_keys or c.decode_keys:
                return "model.encode_keys / decode_keys choose keys of a Dict observation; this env has one array"
            return None
        return (multimodal.check_keys(obs, c.encode_keys, "model.encode_keys")
                or multimodal.check_keys(obs, c.decode_keys, "model.decode_keys"))

    def __init__(self, cfg: Config, obs_space: gym.Space, act_space: gym.Space, device: Any = "cpu"):
        super().__init__()
        self.cfg = cfg
        self.device = torch.device(device)
        self.obs_space, self.act_space = obs_space, act_space
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.act_dim = action_dim(act_space)
        self.image = is_image_space(obs_space)
        c = cfg
        self.stoch_dim = c.groups * c.classes if c.latent == "categorical" else c.stoch
        self.feat_dim = c.deter + self.stoch_dim
        stats = c.groups * c.classes if c.latent == "categorical" else 2 * c.stoch
        # observation encoder / decoder
        self.multimodal = isinstance(obs_space, gym.spaces.Dict)
        if self.multimodal:
            keys = multimodal.modality_keys(obs_space)
            enc, dec = list(c.encode_keys) or keys, list(c.decode_keys) or keys
            self.encoder = multimodal.MultiEncoder(obs_space, enc, c.cnn_depth, c.units, c.layers)
            scales = {k: c.image_scale if multimodal.is_image(obs_space.spaces[k]) else c.vector_scale for k in dec}
            self.decoder = multimodal.MultiDecoder(obs_space, dec, self.feat_dim, c.cnn_depth, c.units, c.layers, scales)
            self.image_key = self.decoder.image_keys[0] if self.decoder.image_keys else None  # open-loop videos
            embed = self.encoder.out_dim
        elif self.image:
            size = obs_space.shape[0] if obs_space.shape[-1] in (1, 3) else obs_space.shape[-1]
            self.channels_last = obs_space.shape[-1] in (1, 3)
            ch = obs_space.shape[-1] if self.channels_last else obs_space.shape[0]
            self.encoder = ConvEncoder(size, c.cnn_depth, ch)
            self.decoder = ConvDecoder(self.feat_dim, size, c.cnn_depth, ch)
            embed = self.encoder.out_dim
        else:
            obs_dim = int(np.prod(obs_space.shape))
            self.encoder = mlp(obs_dim, None, c.units, c.layers)
            self.decoder = mlp(self.feat_dim, obs_dim, c.units, c.layers)
            embed = c.units
        # RSSM core
        self.img_in = mlp(self.stoch_dim + self.act_dim, None, c.hidden, 1)
        self.gru = nn.GRUCell(c.hidden, c.deter) if c.gru == "torch" else NormGRUCell(c.hidden, c.deter)
        self.prior_net = mlp(c.deter, stats, c.hidden, 1)
        self.post_net = mlp(c.deter + embed, stats, c.hidden, 1)
        # heads
        rbins = dists.head_bins(c.reward_head)
        self.reward_net = zero_last(mlp(self.feat_dim, rbins, c.units, c.layers))
        self.cont_net = mlp(self.feat_dim, 1, c.units, c.layers)
        self.actions = ActionCoder(act_space)  # env actions are one-hot or rescaled to [-1, 1] for the model and agents
        self.to(self.device)
        self.opt = adam(self.parameters(), c.lr, c.eps, self.device)
        self.posteriors: Posteriors | None = None  # of the latest update: where imagination starts
        self._updates = 0

    # ----- inputs -------------------------------------------------------------------------------
    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw obs (..., *obs_shape) -> network input: images to (..., C, H, W) in [-0.5, 0.5] (a Dict: per key)."""
        if self.multimodal:
            return multimodal.preprocess(self.obs_space, obs, self.device, self.cfg.symlog_obs)
        if self.image:
            x = obs.to(self.device, torch.float32) / 255.0 - 0.5
            return x.movedim(-1, -3) if self.channels_last else x
        x = obs.to(self.device, torch.float32).flatten(obs.dim() - len(self.obs_space.shape))
        return dists.symlog(x) if self.cfg.symlog_obs else x

    def embed(self, obs: np.ndarray | dict[str, np.ndarray]) -> torch.Tensor:
        """Env observations (N, ...) as the vector env gives them (a dict of arrays for a Dict space) -> (N, E)."""
        return self.encoder(self.preprocess(tree_map(lambda o: torch.as_tensor(np.asarray(o)), obs)))

    def encode_action(self, action: torch.Tensor) -> torch.Tensor:
        """Replay/env actions (...,) int or (..., A) float -> (..., A): one-hot, or rescaled to [-1, 1]."""
        return self.actions.encode(action, self.device)

    # ----- RSSM core ------------------------------------------------------------------------------
    def initial(self, n: int) -> State:
        z = torch.zeros
        return {"deter": z(n, self.cfg.deter, device=self.device), "stoch": z(n, self.stoch_dim, device=self.device)}

    def feat(self, state: State) -> torch.Tensor:
        return torch.cat([state["deter"], state["stoch"]], -1)

    def _stats(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.cfg.latent == "categorical":
            logits = out.reshape(*out.shape[:-1], self.cfg.groups, self.cfg.classes)
            return {"logits": dists.unimix_logits(logits, self.cfg.unimix)}
        mean, std = out.chunk(2, -1)
        return {"mean": mean, "std": dists.softplus_std(std, self.cfg.min_std)}

    def _sample(self, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.latent == "categorical":
            logits = stats["logits"]
            probs = logits.softmax(-1)
            # inverse-CDF sampling: much cheaper on CPU than torch.multinomial for many small categoricals
            u = torch.rand(*probs.shape[:-1], 1, device=probs.device, dtype=probs.dtype)
            idx = (probs.detach().cumsum(-1) < u).sum(-1).clamp(max=probs.shape[-1] - 1)
            onehot = F.one_hot(idx, probs.shape[-1]).to(probs.dtype)
            sample = onehot + probs - probs.detach()  # straight-through gradients
            return sample.flatten(-2)
        return stats["mean"] + stats["std"] * torch.randn_like(stats["std"])

    def img_step(self, state: State, action: torch.Tensor, sample: bool = True) -> State:
        """Prior step: (state_{t-1}, a_t) -> state_t with z_t ~ p(z_t | h_t)."""
        x = self.img_in(torch.cat([state["stoch"], action], -1))
        deter = self.gru(x, state["deter"])
        stats = self._stats(self.prior_net(deter))
        stoch = self._sample(stats) if sample else self._mode(stats)
        return {"deter": deter, "stoch": stoch, **stats}

    def _mode(self, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.latent == "categorical":
            logits = stats["logits"]
            return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype).flatten(-2)
        return stats["mean"]

    def obs_step(self, state: State, action: torch.Tensor, embed: torch.Tensor, is_first: torch.Tensor) -> State:
        """Posterior step for one env step: resets at is_first, then GRU and q(z_t | h_t, e_t)."""
        keep = (1.0 - is_first.float()).unsqueeze(-1)
        state = {"deter": state["deter"] * keep, "stoch": state["stoch"] * keep}
        x = self.img_in(torch.cat([state["stoch"], action * keep], -1))
        deter = self.gru(x, state["deter"])
        stats = self._stats(self.post_net(torch.cat([deter, embed], -1)))
        return {"deter": deter, "stoch": self._sample(stats), **stats}

    def observe(self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor, state: State | None = None):
        """Posterior states over sequences: embed (B, L, E), action (B, L, A), is_first (B, L) -> dict of (B, L, ...)."""
        B, L = embed.shape[:2]
        state = self.initial(B) if state is None else state
        posts = []
        for t in range(L):
            state = self.obs_step(state, action[:, t], embed[:, t], is_first[:, t])
            posts.append(state)
        return {k: torch.stack([p[k] for p in posts], 1) for k in posts[0]}

    def kl(self, post: dict[str, torch.Tensor], prior: dict[str, torch.Tensor], sg_post: bool, sg_prior: bool):
        """KL(post || prior) summed over the latent, shape (B, L); stop-gradient on either side."""
        P = {k: v.detach() if sg_post else v for k, v in post.items()}
        Q = {k: v.detach() if sg_prior else v for k, v in prior.items()}
        if self.cfg.latent == "categorical":
            lp, lq = P["logits"].log_softmax(-1), Q["logits"].log_softmax(-1)
            return (lp.exp() * (lp - lq)).sum((-1, -2))
        var_ratio = (P["std"] / Q["std"]) ** 2
        t1 = ((P["mean"] - Q["mean"]) / Q["std"]) ** 2
        return 0.5 * (var_ratio + t1 - 1 - var_ratio.log()).sum(-1)

    # ----- heads ----------------------------------------------------------------------------------
    def reward(self, feat: torch.Tensor):
        return dists.head_dist(self.reward_net(feat), self.cfg.reward_head)

    def cont(self, feat: torch.Tensor):
        return dists.bernoulli(self.cont_net(feat))

    # ----- training -------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float], State]:
        c = self.cfg
        obs = self.preprocess(batch["obs"])
        action = self.encode_action(batch["action"])
        is_first = batch["is_first"].to(self.device).float()
        embed = self.encoder(obs)
        post = self.observe(embed, action, is_first)
        prior = self._stats(self.prior_net(post["deter"]))
        feat = self.feat(post)
        # reconstruction
        per_key = {}
        if self.multimodal:
            obs_loss, per_key = self.decoder.loss(feat, obs)
        elif self.image:
            obs_loss = ((self.decoder(feat) - obs) ** 2).sum((-3, -2, -1))
        else:
            obs_loss = ((self.decoder(feat) - obs) ** 2).sum(-1)
        reward = batch["reward"].to(self.device).float()
        rew_dist = self.reward(feat)
        rew_loss = -rew_dist.log_prob(reward)
        cont_target = 1.0 - batch["is_terminal"].to(self.device).float()
        # rare terminals (CartPole's cart leaving the track: ~1 row in 1,000) are otherwise never learned
        cont_loss = -self.cont(feat).log_prob(cont_target) * (1 + (c.terminal_weight - 1) * (1 - cont_target))
        post_stats = {k: v for k, v in post.items() if k not in ("deter", "stoch")}
        if c.kl_balance:
            dyn = self.kl(post_stats, prior, sg_post=True, sg_prior=False)
            rep = self.kl(post_stats, prior, sg_post=False, sg_prior=True)
            kl_loss = c.dyn_scale * dyn.clamp(min=c.free_bits) + c.rep_scale * rep.clamp(min=c.free_bits)
            kl_value = dyn
        else:
            kl_value = self.kl(post_stats, prior, sg_post=False, sg_prior=False)
            kl_loss = c.kl_scale * kl_value.clamp(min=c.free_bits)
        loss = (c.obs_scale * obs_loss + c.reward_scale * rew_loss + c.cont_scale * cont_loss + kl_loss).mean()
        metrics = {
            "model/loss": loss.item(),
            "model/obs_loss": obs_loss.mean().item(),
            "model/reward_loss": rew_loss.mean().item(),
            "model/cont_loss": cont_loss.mean().item(),
            "model/kl": kl_value.mean().item(),
            "model/reward_error": (rew_dist.mean() - reward).abs().mean().item(),
            **{f"model/obs_loss_{k}": v.mean().item() for k, v in per_key.items()},
        }
        return loss, metrics, post

    @torch.no_grad()
    def infer(self, batch: dict[str, torch.Tensor]) -> Posteriors:
        """The posteriors of ``batch`` without an update (to imagine from sequences the model did not train on)."""
        _, _, post = self.loss(batch)
        return Posteriors(batch, post, 1.0 - batch["is_terminal"].to(self.device).float())

    def train_step(self, replay, step: int) -> dict[str, float]:
        """One world-model update on replay.sample_sequences(batch, length); keeps the posteriors for the agent."""
        try:
            batch = replay.sample_sequences(self.cfg.batch, self.cfg.length, self.cfg.terminal_share)
        except ValueError:  # no env has `length` rows yet (update.start too early): skip this update
            return {}
        loss, metrics, post = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip)
        self.opt.step()
        metrics["model/grad_norm"] = float(gn)
        self.posteriors = Posteriors(batch, {k: v.detach() for k, v in post.items()},
                                     1.0 - batch["is_terminal"].to(self.device).float())
        self._updates += 1
        return metrics

    # ----- open-loop video (pixel envs) ---------------------------------------------------------------
    @torch.no_grad()
    def open_loop(self, batch: dict[str, torch.Tensor], context: int = 5, n: int = 4) -> np.ndarray:
        """Real vs imagined frames: observe `context` steps, then imagine with the real actions.

        Returns uint8 frames (T, H, 3*W... stacked per sequence) as (T, n*H, 3*W, 3): real | model | error.
        """
        obs = self.preprocess(tree_map(lambda o: o[:n], batch["obs"]))
        action = self.encode_action(batch["action"][:n])
        is_first = batch["is_first"][:n].to(self.device).float()
        post = self.observe(self.encoder(tree_map(lambda o: o[:, :context], obs)), action[:, :context],
                            is_first[:, :context])
        recon = self._decode_image(self.feat(post))
        state = {k: v[:, -1] for k, v in post.items()}
        frames = []
        for t in range(context, action.shape[1]):
            state = self.img_step(state, action[:, t], sample=False)
            frames.append(self._decode_image(self.feat(state)))
        model = torch.cat([recon, torch.stack(frames, 1)], 1) if frames else recon
        truth = (obs[self.image_key] if self.multimodal else obs)[:, : model.shape[1]]
        err = (model - truth + 1) / 2
        vid = torch.cat([truth + 0.5, model + 0.5, err], -1)  # (n, T, C, H, 3W)
        vid = vid.clamp(0, 1).permute(1, 0, 3, 4, 2)  # (T, n, H, 3W, C)
        vid = vid.reshape(vid.shape[0], -1, *vid.shape[3:])
        if vid.shape[-1] == 1:
            vid = vid.expand(*vid.shape[:-1], 3)
        return (vid.cpu().numpy() * 255).astype(np.uint8)

    def _decode_image(self, feat: torch.Tensor) -> torch.Tensor:
        return self.decoder.nets[self.image_key](feat) if self.multimodal else self.decoder(feat)

    def write_video(self, path: Path) -> Path:
        """Write the open-loop video of the latest training batch to `path` (.mp4, or .gif without ffmpeg)."""
        import imageio.v2 as imageio

        frames = self.open_loop(self.posteriors.batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            imageio.mimsave(path, list(frames), fps=10, macro_block_size=1)
        except (ImportError, RuntimeError, ValueError, OSError):  # no ffmpeg backend: fall back to a GIF
            path = path.with_suffix(".gif")
            imageio.mimsave(path, list(frames), duration=0.1)
        return path

    def artifacts(self, out_dir: Path, logger=None, step: int | None = None) -> Path | None:
        """Open-loop video (pixel envs) of the latest training batch into out_dir/videos/open_loop_<step>.mp4,
        registered with the logger (and so W&B) when one is given. The online loop calls this after each
        evaluation."""
        has_image = self.image or (self.multimodal and self.image_key is not None)
        if not (has_image and self.cfg.video) or self.posteriors is None:
            return None
        step = self._updates if step is None else step
        path = self.write_video(Path(out_dir) / "videos" / f"open_loop_{step:08d}.mp4")
        if logger is not None and hasattr(logger, "log_file"):
            logger.log_file("model/open_loop", path, "video", step)
        return path
