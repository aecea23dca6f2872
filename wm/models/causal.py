"""Dynamics models of the chemistry world that learn which variables drive which (model=causal), and the dense
baseline they are compared with (model=dense_dynamics). Both are trained by the supervised loop on data=chemistry.

model=causal follows Causal Dynamics Learning (Wang et al. 2022, CDL): a factored model with one predictor per
next-state variable j. Every input i (each variable at t, and the action) has its own feature encoder for each j;
the features are max-pooled over the inputs j may use, so any input can be masked out. Each training step fits
three views of every j on the same batch: all inputs, every leave-one-out (all but i, for each i: the top-2 of
the max-pool gives them cheaply; each view weighted in the loss like the full one), and the current causal mask. Every ``mask_every`` steps from ``mask_start`` on,
the conditional mutual information

    CMI(i -> j) = E[ log p(s'_j | all inputs) - log p(s'_j | all inputs but i) ]   (nats per transition)

is estimated on the held-out ``valid`` split (on training batches, a model that memorises noise through a
spurious input would show that input as informative) and the mask becomes CMI > ``cmi_threshold``. Masked-out inputs are -inf in the max-pool: they
get no gradient and cannot move a prediction, whatever their value (what makes the model robust to shifted
distractors). Predictions (accuracy, planning) use the masked view once a mask exists.

model=dense_dynamics: one MLP from all inputs to all next-state variables, the usual monolithic baseline.

Both: colours are categorical (cross-entropy), distractors Gaussian (mean and softplus std). ``evaluate``
reports next-colour accuracy on the test, shifted-distractor and intervened splits, the learned graph's SHD and
F1 against the world's true lagged graph (causal only), and the planning score: CEM (wm/core/planning.py
``cem_search``) over the model's predictions on ``plan.episodes`` target-matching episodes of the env.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import check_tree, param, require
from wm.core.nets import SavesOptimizers, optimize
from wm.core.planning import cem_search
from wm.core.seeds import CHEMISTRY_STREAM, EVAL, episode_seed
from wm.envs.chemistry import Chemistry


@dataclass
class PlanConfig:
    """The downstream task: reach the episode's target colouring in ``objects`` steps, planning with the model."""

    episodes: int = param(20, ge=0)  # 0: no planning in evaluate
    horizon: int = param(3, gt=0)
    candidates: int = param(200, gt=0)
    iterations: int = param(3, gt=0)
    top_k: int = param(20, gt=0)
    smoothing: float = param(0.05, ge=0, le=1)

    def check(self) -> None:
        require(self.top_k <= self.candidates, "top_k", f"must be <= candidates={self.candidates} (got {self.top_k})")


class TransitionModel(SavesOptimizers, nn.Module):
    """What the two chemistry dynamics models share: input encoding, likelihoods, training, evaluation."""

    loop = "supervised"
    datasets = ("chemistry",)
    OPTIMIZERS: ClassVar[dict[str, str]] = {"optimizer": "opt"}

    @classmethod
    def refuse(cls, plan) -> str | None:
        if not hasattr(plan.data_cls, "SPLITS") or "test_intervened" not in plan.data_cls.SPLITS:
            return f"model={plan.model.name} learns chemistry dynamics; valid data: {', '.join(cls.datasets)}"
        return None

    def __init__(self, cfg, data: Any, device: torch.device | str = "cpu"):
        super().__init__()
        check_tree(cfg, "model")
        self.cfg, self.data, self.device = cfg, data, torch.device(device)
        w = self.world = data.world
        self.n, self.d, self.c = w.n, w.d, w.c
        self.inputs, self.outputs = self.n + self.d + 1, self.n + self.d
        self.width = max(self.c, w.actions)  # every input one-hot (colours, action) or a scalar, padded to this
        self.out_width = max(self.c, 2)  # colour logits, or a distractor's mean and raw std
        self.steps_done = 0

    # ---- inputs and likelihoods ----------------------------------------------------------------------------
    def encode(self, colours, distractors, action) -> torch.Tensor:
        """(B, n), (B, d), (B,) -> (B, inputs, width) float."""
        colours, action = torch.as_tensor(colours, device=self.device), torch.as_tensor(action, device=self.device)
        B = len(action)
        x = torch.zeros(B, self.inputs, self.width, device=self.device)
        x[:, : self.n, : self.c] = F.one_hot(colours, self.c).float()
        x[:, self.n: self.n + self.d, 0] = torch.as_tensor(distractors, dtype=torch.float32, device=self.device)
        x[:, -1, : self.world.actions] = F.one_hot(action, self.world.actions).float()
        return x

    def log_prob(self, out: torch.Tensor, next_colours, next_distractors) -> torch.Tensor:
        """out (..., B, outputs, out_width) -> (..., B, outputs) log-likelihoods of the next state."""
        nc = torch.as_tensor(next_colours, device=self.device)
        nd = torch.as_tensor(next_distractors, dtype=torch.float32, device=self.device)
        lc = F.log_softmax(out[..., : self.n, : self.c], -1)
        lc = lc.gather(-1, nc.expand(*lc.shape[:-1])[..., None]).squeeze(-1)
        mean, std = out[..., self.n:, 0], F.softplus(out[..., self.n:, 1]) + 1e-3
        ld = torch.distributions.Normal(mean, std).log_prob(nd.expand_as(mean))
        return torch.cat([lc, ld], -1)

    def outputs_of(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inputs, width) -> (B, outputs, out_width): the prediction used for accuracy and planning."""
        raise NotImplementedError

    def losses(self, x: torch.Tensor, batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    # ---- training -----------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        rng = np.random.default_rng([self.data.seed, CHEMISTRY_STREAM, step])
        b = self.data.batch(rng, self.cfg.batch)
        self.steps_done = step
        loss, stats = self.losses(self.encode(b["colours"], b["distractors"], b["action"]), b)
        optimize(self.opt, loss)
        self.steps_done = step + 1
        return {"train/loss": loss.item(), **stats}

    # ---- prediction and evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, colours, distractors, action) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely next colours (B, n) and the mean next distractors (B, d)."""
        out = self.outputs_of(self.encode(colours, distractors, action))
        return out[:, : self.n, : self.c].argmax(-1), out[:, self.n:, 0]

    @torch.no_grad()
    def accuracy(self, split: str) -> float:
        """Fraction of next colours predicted exactly, over a split's transitions and objects."""
        d, hits = self.data.splits[split], []
        for s in range(0, len(d["action"]), 1000):
            part = {k: v[s: s + 1000] for k, v in d.items()}
            pred, _ = self.predict(part["colours"], part["distractors"], part["action"])
            hits.append((pred.cpu().numpy() == part["next_colours"]).reshape(-1))
        return float(np.concatenate(hits).mean())

    def graph(self) -> np.ndarray | None:
        """The learned lagged graph (inputs, outputs), or None for a model without one."""
        return None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.eval()
        out = {"eval/accuracy": self.accuracy("test"), "eval/accuracy_shift": self.accuracy("test_shift"),
               "eval/accuracy_intervened": self.accuracy("test_intervened")}
        out["eval/shift_drop"] = out["eval/accuracy"] - out["eval/accuracy_shift"]
        g = self.graph()
        if g is not None:
            from wm.metrics.graphs import edge_f1, shd

            out.update({"eval/shd": float(shd(self.data.true_graph, g)), "eval/edges": float(g.sum()),
                        "eval/f1": edge_f1(self.data.true_graph, g)["f1"]})
        if self.cfg.plan.episodes:
            out.update(plan_targets(self.predict, self.data, self.cfg.plan, self.device))
        self.train()
        return out

    def artifacts(self, out_dir: Path, logger: Any = None) -> dict[str, Path]:
        g = self.graph()
        if g is None:
            return {}
        from wm.metrics.graphs import draw_graphs

        ins, outs = self.world.names()
        path = draw_graphs(Path(out_dir) / "media" / f"graph_{self.steps_done:07d}.png", self.data.true_graph,
                           {"learned (CMI mask)": g}, ins, outs,
                           title=f"{self.world.spec.graph} graph, {self.n} objects: true vs learned")
        if logger is not None:
            logger.log_file("media/graph", path, "image", self.steps_done)
        return {"graph": path}


@torch.no_grad()
def plan_targets(predict: Callable, data: Any, cfg: PlanConfig, device: Any = "cpu") -> dict[str, float]:
    """Target matching with ``predict(colours, distractors, actions) -> (colours, distractors)`` as the model:
    ``cfg.episodes`` episodes of ``objects`` steps in the chemistry env (the run's evaluation seeds), all at
    once; each step executes the first action of a CEM plan that maximises the predicted number of matches
    summed over the horizon. Returns the mean fraction of objects that match at the end and the share of
    episodes that match entirely."""
    spec, E = data.world.spec, cfg.episodes
    envs = [Chemistry(**dataclasses.asdict(spec)) for _ in range(E)]
    for k, env in enumerate(envs):
        env.reset(seed=episode_seed(data.seed, EVAL, k))
    target = torch.as_tensor(np.stack([e.target for e in envs]), device=device)
    C, A, n = cfg.candidates, data.world.actions, data.world.n
    for _ in range(n):
        col = torch.as_tensor(np.stack([e.colours for e in envs]), device=device).repeat_interleave(C, 0)
        dis = torch.as_tensor(np.stack([e.distractors for e in envs]), device=device).repeat_interleave(C, 0)
        tgt = target.repeat_interleave(C, 0)

        def score(acts: torch.Tensor, col=col, dis=dis, tgt=tgt) -> torch.Tensor:
            total = torch.zeros(len(acts), device=device)
            c, d = col, dis
            for t in range(acts.shape[1]):
                c, d = predict(c, d, acts[:, t].argmax(-1))
                total += (torch.as_tensor(c, device=device) == tgt).float().mean(-1)
            return total

        first = cem_search(score, E, A, True, cfg, device).argmax(-1).cpu().numpy()
        for env, a in zip(envs, first):
            env.step(int(a))
    matched = np.stack([e.colours == e.target for e in envs])
    return {"eval/plan_match": float(matched.mean()), "eval/plan_solved": float(matched.all(1).mean())}


class CausalDynamics(TransitionModel):
    """model=causal: CDL's factored model with CMI-tested dependency masks (see the module docstring)."""

    @dataclass
    class Config:
        name: str = param("causal", free="the option's name")
        feature: int = param(32, gt=0)  # per (input, output) feature width
        hidden: int = param(64, gt=0)  # per output predictor width
        lr: float = param(1e-3, gt=0)
        batch: int = param(256, gt=0)
        cmi_threshold: float = param(0.02, ge=0)  # nats; an edge if CMI(i -> j) exceeds it
        mask_start: int = param(1000, ge=0)  # first mask update (train steps)
        mask_every: int = param(500, gt=0)
        plan: PlanConfig = field(default_factory=PlanConfig)

    def __init__(self, cfg: CausalDynamics.Config, data: Any, device: torch.device | str = "cpu"):
        super().__init__(cfg, data, device)
        I, J, W, H, K = self.inputs, self.outputs, self.width, cfg.feature, cfg.hidden

        def p(*shape, fan_in):
            return nn.Parameter(torch.randn(*shape) / fan_in**0.5)

        # per (output j, input i) encoders; per output j predictors: H -> K -> K -> out_width
        self.w1, self.b1 = p(J, I, W, H, fan_in=W), nn.Parameter(torch.zeros(J, I, H))
        self.v1, self.c1 = p(J, H, K, fan_in=H), nn.Parameter(torch.zeros(J, K))
        self.v2, self.c2 = p(J, K, K, fan_in=K), nn.Parameter(torch.zeros(J, K))
        self.v3, self.c3 = p(J, K, self.out_width, fan_in=K), nn.Parameter(torch.zeros(J, self.out_width))
        self.register_buffer("cmi", torch.zeros(I, J))
        self.register_buffer("mask", torch.ones(I, J, dtype=torch.bool))
        self.register_buffer("mask_set", torch.zeros((), dtype=torch.bool))
        self.to(self.device)
        self.opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, I, W) -> (B, J, I, H): what each input says about each output."""
        return F.relu(torch.einsum("biw,jiwh->bjih", x, self.w1) + self.b1)

    def head(self, g: torch.Tensor) -> torch.Tensor:
        """(..., J, H) pooled features -> (..., J, out_width)."""
        g = F.relu(torch.einsum("...jh,jhk->...jk", g, self.v1) + self.c1)
        g = F.relu(torch.einsum("...jk,jkl->...jl", g, self.v2) + self.c2)
        return torch.einsum("...jk,jkl->...jl", g, self.v3) + self.c3

    @staticmethod
    def pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Max over the inputs each output may use; mask (I, J) bool. Masked inputs get no gradient; an output
        with no inputs pools to zeros."""
        m = mask.T[None, :, :, None]  # (1, J, I, 1)
        g = h.masked_fill(~m, float("-inf")).max(2).values
        return torch.where(torch.isinf(g), torch.zeros_like(g), g)

    @staticmethod
    def pool_leave_one_out(h: torch.Tensor) -> torch.Tensor:
        """(B, J, I, H) -> (B, I, J, H): the max over all inputs but i, for every i, from the top two."""
        top = h.topk(2, dim=2)
        first, second, arg = top.values[:, :, :1], top.values[:, :, 1:], top.indices[:, :, :1]
        i = torch.arange(h.shape[2], device=h.device)[None, None, :, None]
        return torch.where(arg == i, second, first).transpose(1, 2)

    def outputs_of(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x), self.mask))

    @torch.no_grad()
    def estimate_cmi(self, split: str = "valid", chunk: int = 500) -> torch.Tensor:
        """(I, J) CMI(i -> j) in nats, averaged over a split's transitions."""
        d, total = self.data.splits[split], torch.zeros(self.inputs, self.outputs, device=self.device)
        for s in range(0, len(d["action"]), chunk):
            b = {k: v[s: s + chunk] for k, v in d.items()}
            h = self.features(self.encode(b["colours"], b["distractors"], b["action"]))
            full = self.log_prob(self.head(h.max(2).values), b["next_colours"], b["next_distractors"])
            loo = self.log_prob(self.head(self.pool_leave_one_out(h)), b["next_colours"][:, None],
                                b["next_distractors"][:, None])
            total += (full[:, None] - loo).sum(0)
        return total / len(d["action"])

    def graph(self) -> np.ndarray:
        return self.mask.cpu().numpy().copy()

    def losses(self, x, batch):
        h = self.features(x)
        full = self.log_prob(self.head(h.max(2).values), batch["next_colours"], batch["next_distractors"])  # (B, J)
        loo = self.log_prob(self.head(self.pool_leave_one_out(h)), batch["next_colours"][:, None],
                            batch["next_distractors"][:, None])  # (B, I, J)
        # every leave-one-out view is trained as hard as the full view: with loo.mean() each would get 1/I of the
        # weight, predict a little worse than the full view, and make every input look slightly informative
        loss = -(full.mean() + loo.mean(0).mean(-1).sum())
        step = self.steps_done + 1
        if step >= self.cfg.mask_start and (step - self.cfg.mask_start) % self.cfg.mask_every == 0:
            self.cmi.copy_(self.estimate_cmi())
            self.mask.copy_(self.cmi > self.cfg.cmi_threshold)
            self.mask_set.fill_(True)
        if self.mask_set:
            masked = self.log_prob(self.head(self.pool(h, self.mask)), batch["next_colours"], batch["next_distractors"])
            loss = loss - masked.mean()
        return loss, {"train/nll_full": -full.mean().item(), "train/edges": float(self.mask.sum())}


class DenseDynamics(TransitionModel):
    """model=dense_dynamics: one MLP from every input to every next-state variable."""

    @dataclass
    class Config:
        name: str = param("dense_dynamics", free="the option's name")
        hidden: int = param(256, gt=0)
        layers: int = param(3, gt=0)
        lr: float = param(1e-3, gt=0)
        batch: int = param(256, gt=0)
        plan: PlanConfig = field(default_factory=PlanConfig)

    def __init__(self, cfg: DenseDynamics.Config, data: Any, device: torch.device | str = "cpu"):
        super().__init__(cfg, data, device)
        dims = [self.inputs * self.width] + [cfg.hidden] * cfg.layers
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(dims[-1], self.outputs * self.out_width))
        self.to(self.device)
        self.opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    def outputs_of(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).reshape(len(x), self.outputs, self.out_width)

    def losses(self, x, batch):
        lp = self.log_prob(self.outputs_of(x), batch["next_colours"], batch["next_distractors"])
        return -lp.mean(), {}
