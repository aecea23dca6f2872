"""data=chemistry: transitions of the chemistry world (wm/envs/chemistry.py) under a uniformly random policy,
for learning its dynamics and its causal graph (model=causal, model=dense_dynamics).

Episodes of ``episode_length`` random actions from random states (CDL's data collection). Splits, each a dict
of arrays ``colours`` (n, objects) int64, ``distractors`` (n, d) float32, ``action`` (n,) int64 and the
``next_`` colours and distractors:
- ``train``, ``valid`` and ``test``: the world as configured;
- ``test_shift``: distractors of standard deviation ``shift_std`` (CDL's out-of-distribution test);
- ``test_intervened``: object ``intervene``'s mechanism replaced (-1: the last object, which has parents in
  every preset graph).
``true_graph`` is the world's lagged graph (``ChemistryWorld.lagged_graph``). Everything comes from the run
seed (episodes) and ``world.graph_seed`` (the graph and its mechanisms).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from wm.config import check_tree, param, require
from wm.envs.chemistry import ChemistryWorld, WorldSpec


class ChemistryTransitions:
    SPLITS = ("train", "valid", "test", "test_shift", "test_intervened")

    @dataclass
    class Config:
        name: str = param("chemistry", free="the option's name")
        world: WorldSpec = field(default_factory=WorldSpec)
        train: int = param(10000, gt=0)  # transitions
        valid: int = param(2000, gt=0)  # held-out transitions of the training world (model=causal's CMI tests)
        test: int = param(2000, gt=0)  # transitions per test split
        episode_length: int = param(10, gt=0)
        shift_std: float = param(5.0, gt=0)  # distractor standard deviation of test_shift
        intervene: int = param(-1, ge=-1)  # object whose mechanism test_intervened replaces; -1: the last

        def check(self) -> None:
            require(self.world.intervene is None, "world.intervene",
                    "the training world is not intervened on: data.intervene picks test_intervened's object")
            require(self.intervene < self.world.objects, "intervene",
                    f"must be < world.objects={self.world.objects} or -1 (got {self.intervene})")

    def __init__(self, cfg: ChemistryTransitions.Config, seed: int = 0):
        check_tree(cfg, "data")
        self.cfg, self.seed = cfg, seed
        self.spec = cfg.world
        self.world = ChemistryWorld(self.spec)
        self.true_graph = self.world.lagged_graph()
        self.intervened = cfg.intervene if cfg.intervene >= 0 else cfg.world.objects - 1
        shifted = ChemistryWorld(dataclasses.replace(self.spec, distractor_std=cfg.shift_std))
        try:
            intervened = ChemistryWorld(dataclasses.replace(self.spec, intervene=self.intervened))
        except ValueError as e:
            raise ValueError(f"data.intervene: {e}") from None
        worlds = {"train": (self.world, cfg.train), "valid": (self.world, cfg.valid), "test": (self.world, cfg.test),
                  "test_shift": (shifted, cfg.test), "test_intervened": (intervened, cfg.test)}
        self.splits = {name: self._collect(w, n, np.random.default_rng([seed, 0xDA7A, k]))
                       for k, (name, (w, n)) in enumerate(worlds.items())}

    @classmethod
    def refuse(cls, plan) -> str | None:
        c = plan.data
        try:  # an object without parents has no mechanism to replace
            ChemistryWorld(dataclasses.replace(c.world, intervene=c.intervene % c.world.objects))
        except ValueError as e:
            return f"data.intervene: {e}"
        return None

    def _collect(self, world: ChemistryWorld, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        L = self.cfg.episode_length
        episodes = -(-n // L)
        col, dis = world.sample_state(rng, episodes)
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("colours", "distractors", "action",
                                                             "next_colours", "next_distractors")}
        for _ in range(L):
            act = rng.integers(0, world.actions, episodes)
            nc, nd = world.step(col, dis, act, rng)
            for k, v in zip(rows, (col, dis, act, nc, nd)):
                rows[k].append(v)
            col, dis = nc, nd
        # episode-major order, cut to n
        return {k: np.stack(v, 1).reshape(episodes * L, *v[0].shape[1:])[:n] for k, v in rows.items()}

    def batch(self, rng: np.random.Generator, size: int, split: str = "train") -> dict[str, np.ndarray]:
        d = self.splits[split]
        idx = rng.integers(0, len(d["action"]), size)
        return {k: v[idx] for k, v in d.items()}

