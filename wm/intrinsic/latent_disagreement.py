"""Plan2Explore-style latent disagreement (Sekar et al. 2020) for Dreamer (model=rssm agent=actor_critic).

``intrinsic=disagreement`` serves both agents: DQN gets the observation ensemble of disagreement.py, an agent
whose ``takes_intrinsic`` is ``"latent"`` (actor_critic) gets this variant, picked by ``latent_variant``
in wm/validate.py from the same yaml (scale, normalize, norm_window, hidden, lr, members).

K one-step predictors map (feat_t = [h_t, z_t], a_{t+1}) to the world model's next encoder embedding e_{t+1}
(Plan2Explore's choice; ``+intrinsic.target=stoch`` or ``feat`` predict the next posterior sample z_{t+1} or
[h_{t+1}, z_{t+1}] instead). Rows follow the replay format: row t+1 holds the action that led from obs_t to
obs_{t+1}, so a pair is (posterior t, action of row t+1) -> embedding of row t+1, skipped where row t+1
starts an episode. They train on the posterior states of the world model's latest batch, detached, so the
world model gets no gradient from them; each member on its own bootstrap resample (Disagreement.loss).

In imagination, the intrinsic reward of the transition feat_t -a_t-> feat_{t+1} is the variance across members
of their predictions from (feat_t, a_t), mean over dims; the actor-critic learns from
    reward_t = predicted extrinsic reward(feat_{t+1}) + scale * raw_t / running std(raw)     (normalize: std)
Shapes: feat (..., F), action (..., A) one-hot or in [-1, 1] (RSSM.encode_action), reward (...).

Logged: intrinsic/loss, intrinsic/reward_raw and intrinsic/bonus (means over the imagined steps), and the
exploration statistics of Intrinsic.observe on the real rows (coverage, first_goal_step, per-episode
extrinsic return). The per-episode intrinsic return is not logged: the bonus is paid in imagination, real
rows carry none.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import nn

from wm.config import param, require
from wm.core.nets import mlp
from wm.intrinsic.base import Intrinsic, NoIntrinsic
from wm.intrinsic.disagreement import Disagreement, DisagreementConfig

TARGETS = ("embed", "stoch", "feat")


def _act_space(act_space: gym.Space) -> gym.Space:
    """The base class reads ``act_space.n`` for one-hot observation-module inputs; latent modules take the
    world model's encoded actions instead, so continuous action spaces are fine (Dreamer on Pendulum)."""
    return act_space if isinstance(act_space, gym.spaces.Discrete) else gym.spaces.Discrete(1)


@dataclass
class LatentDisagreementConfig(DisagreementConfig):
    target: str = param("embed", choices=TARGETS)  # what the members predict: embed (Plan2Explore), stoch, feat

    def check(self) -> None:
        require(self.normalize in ("std", "none"), "normalize",
                f"agent=actor_critic normalises its imagined bonus by std or none (got {self.normalize!r})")
        require(self.episodic, "episodic", "agent=actor_critic adds the bonus in imagination, where the "
                "model's continue head ends returns; only episodic=true")


class LatentDisagreement(Disagreement):
    Config = LatentDisagreementConfig

    def __init__(self, cfg: LatentDisagreementConfig, obs_space: gym.Space, act_space: gym.Space,
                 device="cpu"):
        Intrinsic.__init__(self, cfg, obs_space, _act_space(act_space), device)  # not Disagreement's obs ensemble
        self.obs_rms = None  # no observation features: the members see the world model's latents
        self.models: nn.ModuleList | None = None  # built by bind(), once the world model's sizes are known

    def bind(self, model) -> None:
        """Build the ensemble for ``model`` (an RSSM): inputs feat_dim + act_dim, outputs the target's size."""
        with torch.no_grad():
            out = {"embed": model.encoder(model.preprocess(torch.zeros(1, *model.obs_space.shape))).shape[-1],
                   "stoch": model.stoch_dim, "feat": model.feat_dim}[self.cfg.target]
        inp = model.feat_dim + model.act_dim
        self.models = nn.ModuleList(mlp(inp, out, self.cfg.hidden, norm=False, act=nn.ReLU)
                                    for _ in range(self.cfg.members)).to(self.device)
        self.optim = torch.optim.Adam(self.models.parameters(), lr=self.cfg.lr)

    # Disagreement.loss / raw_reward read these: latents go in as they are
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def predictions(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # (K, ..., out)
        x = torch.cat([feat, action], -1)
        return torch.stack([m(x) for m in self.models])

    def raw_reward(self, obs, action, next_obs):
        """Real replay rows (Intrinsic.observe) carry no bonus: it is paid in imagination."""
        return torch.zeros(len(obs), device=obs.device)

    def observe(self, replay) -> dict[str, float]:
        out = super().observe(replay)
        out.pop("intrinsic/episode_intrinsic_return", None)  # would be 0: see raw_reward
        return out

    def forward(self, batch):
        raise TypeError("the latent variant has no replay-batch hook: use train_on() and imagined_bonus()")

    # ---- the actor-critic's hooks ----------------------------------------------------------------
    def train_on(self, model, post: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """One ensemble step on posterior states ``post`` (B, L, ...) of the sequences ``batch`` (B, L, ...)."""
        with torch.no_grad():
            feat = model.feat(post).detach()
            action = model.encode_action(batch["action"])
            if self.cfg.target == "embed":
                target = model.encoder(model.preprocess(batch["obs"]))
            else:
                target = post["stoch"] if self.cfg.target == "stoch" else feat
            valid = ~batch["is_first"][:, 1:].to(feat.device).bool()
            x, a, y = feat[:, :-1][valid], action[:, 1:][valid], target[:, 1:][valid].detach()
        if len(x) == 0:
            return
        loss = self.loss(x, a, y)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.stats = {"intrinsic/loss": loss.item()}

    def disagreement(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Variance across members (mean over dims), shape feat.shape[:-1]. Gradients reach ``feat`` and
        ``action`` (the actor's dynamics gradients), never the members."""
        self.models.requires_grad_(False)
        try:
            return self.predictions(feat, action).var(0).mean(-1)
        finally:
            self.models.requires_grad_(True)

    def imagined_bonus(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """feat (H, N, F) of the states acted in, action (H, N, A) -> scale * normalised bonus (H, N)."""
        raw = self.disagreement(feat, action)
        if self.cfg.normalize == "std":
            self.reward_rms.update(raw.detach())
        bonus = self.cfg.scale * self.normalized(raw)
        self.stats.update({"intrinsic/reward_raw": raw.mean().item(), "intrinsic/bonus": bonus.mean().item()})
        return bonus


class LatentNoIntrinsic(NoIntrinsic):
    """``intrinsic=none`` for actor_critic: no bonus; the exploration statistics of the real rows are kept."""

    def __init__(self, cfg, obs_space: gym.Space, act_space: gym.Space, device="cpu"):
        super().__init__(cfg, obs_space, _act_space(act_space), device)
        self.obs_rms = None


def latent_variant(cls: type | None) -> type | None:
    """The module an agent that adds its bonus in imagination gets for ``intrinsic=<option>`` (None: no such
    variant: the option scores observations, e.g. RND and ICM)."""
    if cls is None or issubclass(cls, NoIntrinsic):
        return LatentNoIntrinsic
    if issubclass(cls, Disagreement):
        return LatentDisagreement
    return None
