"""Draws from the two generative processes behind the synthetic datasets, from their parameters alone.

The datasets hand their true parameters (``true_params``) to the models, which build the true HMM or Kalman
filter from them; the data layer only samples. The draws match ``CategoricalHMM(**p).sample`` and
``KalmanFilter(**p).sample`` number for number (tests/data/test_hmm_kalman_data.py checks it), so a seed
gives the same dataset as when the datasets sampled through the model classes.
"""

from __future__ import annotations

import torch

DTYPE = torch.float64


def markov_states(startprob, transmat, u: torch.Tensor) -> torch.Tensor:
    """States (n, T) of a Markov chain by inverse CDF on uniforms ``u`` (n, T): one gather and compare a step."""
    cum_start, cum = startprob.cumsum(0), transmat.cumsum(1)
    last = len(startprob) - 1
    s = (u[:, 0, None] > cum_start).sum(-1).clamp_max(last)
    states = [s]
    for t in range(1, u.shape[1]):
        s = (u[:, t, None] > cum[s]).sum(-1).clamp_max(last)
        states.append(s)
    return torch.stack(states, 1)


@torch.no_grad()
def categorical_hmm(startprob, transmat, emissionprob, T: int, generator: torch.Generator, n: int):
    """(states (n, T), symbols (n, T)): hidden states by inverse CDF on pre-drawn uniforms, then emissions."""
    states = markov_states(startprob, transmat, torch.rand(n, T, generator=generator, dtype=DTYPE))
    u = torch.rand(states.shape, generator=generator, dtype=DTYPE)
    obs = (u[..., None] > emissionprob.cumsum(1)[states]).sum(-1).clamp_max(emissionprob.shape[1] - 1)
    return states, obs


@torch.no_grad()
def linear_gaussian(F, H, Q, R, x0, P0, T: int, generator: torch.Generator, n: int):
    """(states (n, T, n_state), observations (n, T, m)) of x_t = F x_{t-1} + w, y_t = H x_t + v."""
    def gauss(mean, chol):
        return mean + torch.randn(mean.shape, generator=generator, dtype=DTYPE) @ chol.mT

    LP0, LQ, LR = (torch.linalg.cholesky(c) for c in (P0, Q, R))
    x = gauss(x0.expand(n, -1), LP0)
    xs = [x]
    for _ in range(1, T):
        x = gauss(x @ F.T, LQ)
        xs.append(x)
    xs = torch.stack(xs, 1)
    ys = gauss(xs.reshape(n * T, -1) @ H.T, LR).view(n, T, -1)
    return xs, ys
