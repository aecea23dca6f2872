"""A Kalman filter on a gymnasium env, as a bridge to world models: CartPole's full state from positions.

CartPole-v1 is run by a noisy linear balancing policy (upright, so the dynamics stay near their
linearisation). We observe only the cart position and the pole angle, with Gaussian noise, plus the
applied force u = +-10 N, and estimate all four state variables (x, x_dot, theta, theta_dot).

The linear model x_t = F x_{t-1} + B u_t + w, y_t = H x_t + v is fitted by EM from a physics-free start:
constant velocities (F = kinematics, B = 0) and guessed noise levels. The kinematic rows of F
(position += dt * velocity) are held fixed, which pins the meaning of the hidden velocity coordinates;
EM learns the velocity rows of F (how the pole's angle drives the accelerations), B, Q, R, x0 and P0.
`bridge()` (episodes from wm/data/cartpole_states.py) reports the smoothed-state RMSE on held-out episodes
for the start model and the fitted one, and the finite-difference velocity estimate for reference.
"""

from __future__ import annotations

import numpy as np
import torch

from wm.data.cartpole_states import TAU, collect, finite_difference
from wm.models.kalman import KalmanFilter


def start_model(noise=(0.05, 0.02)) -> KalmanFilter:
    F = np.eye(4)
    F[0, 1] = F[2, 3] = TAU
    H = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])
    Q = np.diag([1e-5, 0.05, 1e-5, 0.1])              # velocities may change: the start knows no physics
    R = np.diag([(2 * noise[0]) ** 2, (2 * noise[1]) ** 2])  # noise levels guessed 2x too large
    return KalmanFilter(F, H, Q, R, np.zeros(4), 0.01 * np.eye(4), B=np.zeros((4, 1)))


def rmse_per_dim(est: np.ndarray, truth: np.ndarray, lengths: np.ndarray) -> list[float]:
    mask = np.arange(truth.shape[1])[None] < lengths[:, None]
    return np.sqrt(((est - truth)[mask] ** 2).mean(0)).tolist()


def bridge(n_train: int = 30, n_test: int = 20, T: int = 300, n_iter: int = 150, seed: int = 0) -> dict:
    """Fit on n_train episodes, report the smoothed-state RMSE on n_test held-out ones."""
    _, Y, U, L = collect(n_train, T, seed)
    St, Yt, Ut, Lt = collect(n_test, T, seed + 1)
    kf = start_model()
    names = ["x", "x_dot", "theta", "theta_dot"]

    def evaluate(model):
        with torch.no_grad():
            sm = model.smooth(Yt, Ut, lengths=Lt).means.numpy()
        return dict(zip(names, rmse_per_dim(sm, St, Lt)))

    before = evaluate(kf)
    kf.fit(Y, U, lengths=L, n_iter=n_iter, em_vars=("F", "B", "Q", "R", "x0", "P0"), fixed_rows=(0, 2))
    after = evaluate(kf)
    h = np.asarray(kf.history)
    return {
        "train_episodes": n_train, "test_episodes": n_test, "max_steps": T, "em_iterations": n_iter,
        "test_steps": int(Lt.sum()),
        "state_rmse_start_model": before, "state_rmse_fitted": after,
        "state_rmse_finite_difference": dict(zip(names, rmse_per_dim(finite_difference(Yt, Lt), St, Lt))),
        "state_std": dict(zip(names, St[np.arange(T)[None] < Lt[:, None]].std(0).tolist())),
        "em_monotone": bool((np.diff(h) >= -1e-9 * np.abs(h[1:])).all()),
        "fitted_B": kf.B[:, 0].tolist(),
        "history": h.tolist(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps({k: v for k, v in bridge().items() if k != "history"}, indent=1))
