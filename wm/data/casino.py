"""data=casino: the dishonest casino of Durbin et al. (Biological Sequence Analysis, 1998, ch. 3).

A casino switches between a fair die and a loaded one (a six half of the time) as a hidden Markov
chain (fair -> loaded 0.05, loaded -> fair 0.1 per roll). The dataset draws training and held-out
sequences of rolls (faces 1..6 stored as 0..5) with their true dice from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wm.config import check_tree, param
from wm.data.generative import DTYPE, categorical_hmm


def casino_params(p_fair_to_loaded: float = 0.05, p_loaded_to_fair: float = 0.1,
                  loaded_six: float = 0.5) -> dict[str, torch.Tensor]:
    """The casino HMM's startprob, transmat, emissionprob (float64): state 0 = fair, 1 = loaded; symbols
    0..5 = faces 1..6. ``CategoricalHMM(**casino_params())`` is the true model."""
    other = (1 - loaded_six) / 5
    p = {"startprob": torch.tensor([0.5, 0.5]),
         "transmat": torch.tensor([[1 - p_fair_to_loaded, p_fair_to_loaded],
                                   [p_loaded_to_fair, 1 - p_loaded_to_fair]]),
         "emissionprob": torch.tensor([[1 / 6] * 6, [other] * 5 + [loaded_six]])}
    return {k: v.to(DTYPE) for k, v in p.items()}  # built in float32 first, as the datasets always were


class Casino:
    """Sequences of die rolls: `train_obs` (n_train, train_length) long, `test_obs`, their `*_states`, and
    the HMM's `true_params`."""

    @dataclass
    class Config:
        name: str = param("casino", free="the option's name")
        n_train: int = param(10, gt=0)  # 10 x 1000 = 10,000 training rolls
        train_length: int = param(1000, gt=0)
        n_test: int = param(10, gt=0)
        test_length: int = param(1000, gt=0)
        p_fair_to_loaded: float = param(0.05, gt=0, lt=1)
        p_loaded_to_fair: float = param(0.1, gt=0, lt=1)
        loaded_six: float = param(0.5, gt=0, lt=1)

    state_names = ("fair", "loaded")

    def __init__(self, cfg: Casino.Config, seed: int = 0):
        check_tree(cfg, "data")  # also when built directly, not through typed()
        self.cfg, self.seed = cfg, seed
        self.true_params = casino_params(cfg.p_fair_to_loaded, cfg.p_loaded_to_fair, cfg.loaded_six)
        g = torch.Generator().manual_seed(seed)
        p = self.true_params
        self.train_states, self.train_obs = categorical_hmm(**p, T=cfg.train_length, generator=g, n=cfg.n_train)
        self.test_states, self.test_obs = categorical_hmm(**p, T=cfg.test_length, generator=g, n=cfg.n_test)
        self.train_lengths = torch.full((cfg.n_train,), cfg.train_length)
        self.test_lengths = torch.full((cfg.n_test,), cfg.test_length)
