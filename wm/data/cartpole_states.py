"""CartPole episodes for the Kalman bridge (wm/models/cartpole_kalman.py): full states and noisy positions.

CartPole-v1 is run by a noisy linear balancing policy (upright, so the dynamics stay near their
linearisation). We observe only the cart position and the pole angle, with Gaussian noise, plus the
applied force u = +-10 N, and estimate all four state variables (x, x_dot, theta, theta_dot).
"""

from __future__ import annotations

import numpy as np

TAU = 0.02  # CartPole-v1's integration step


def collect(n: int, T: int, seed: int, noise=(0.05, 0.02), explore: float = 0.3):
    """Episodes of at most T steps: states (n, T, 4), observations (n, T, 2), controls (n, T, 1), lengths.

    u[:, t] is the force that moved the state from t-1 to t (u[:, 0] = 0), as KalmanFilter expects.
    """
    import gymnasium as gym

    env = gym.make("CartPole-v1", max_episode_steps=T)
    rng = np.random.default_rng(seed)
    states, obs = np.zeros((n, T, 4)), np.full((n, T, 2), np.nan)
    u, lengths = np.zeros((n, T, 1)), np.zeros(n, dtype=int)
    for i in range(n):
        s, _ = env.reset(seed=seed * 100_003 + i)
        for t in range(T):
            states[i, t] = s
            obs[i, t] = (s[0] + noise[0] * rng.normal(), s[2] + noise[1] * rng.normal())
            a = int(0.05 * s[0] + 0.3 * s[1] + 8.0 * s[2] + 1.5 * s[3] > 0)
            if rng.random() < explore:
                a = int(rng.integers(2))
            lengths[i] = t + 1
            if t + 1 < T:
                u[i, t + 1, 0] = 10.0 if a == 1 else -10.0
            s, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                break
    env.close()
    return states, obs, u, lengths


def finite_difference(obs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(x, x_dot, theta, theta_dot) from the raw observations, velocities by central differences."""
    vel = np.zeros_like(obs)
    for i, n in enumerate(lengths):
        if n > 1:
            vel[i, :n] = np.gradient(obs[i, :n], TAU, axis=0)
    return np.stack([obs[..., 0], vel[..., 0], obs[..., 1], vel[..., 1]], -1)
