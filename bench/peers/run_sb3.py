"""Train a Stable-Baselines3 peer; executed by bench/peers_sb3.py inside the peer venv (never the project's).

Usage: run_sb3.py ALGO ENV_ID SEED STEPS EVAL_EVERY EVAL_EPISODES OUT.json HYPERPARAMS_JSON

Trains ``ALGO`` (dqn | sac) with the given hyperparameters (SB3 keyword arguments; ``net_arch`` goes into
policy_kwargs) for STEPS env steps, evaluating every EVAL_EVERY steps on EVAL_EPISODES deterministic episodes
(seeds 10_000 + k, the same at every evaluation). OUT gets the eval curve and the process CPU seconds spent
training (evaluation excluded) and in all. Imports only SB3, gymnasium and numpy: runs without the project.
"""

from __future__ import annotations

import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.callbacks import BaseCallback


def evaluate(model, env_id: str, episodes: int) -> float:
    env = gym.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=10_000 + k)
        done, ret = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, term, trunc, _ = env.step(action)
            ret, done = ret + float(reward), term or trunc
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


class Evaluate(BaseCallback):
    def __init__(self, env_id: str, every: int, episodes: int):
        super().__init__()
        self.env_id, self.every, self.episodes = env_id, every, episodes
        self.curve: list[list[float]] = []
        self.eval_cpu = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            t = time.process_time()
            self.curve.append([self.num_timesteps, evaluate(self.model, self.env_id, self.episodes)])
            self.eval_cpu += time.process_time() - t
        return True


def main(algo: str, env_id: str, seed: int, steps: int, every: int, episodes: int, out: str, hyper: str) -> None:
    torch.set_num_threads(1)
    kwargs = json.loads(hyper)
    policy_kwargs = {"net_arch": kwargs.pop("net_arch")} if "net_arch" in kwargs else None
    cls = {"dqn": DQN, "sac": SAC}[algo]
    model = cls("MlpPolicy", gym.make(env_id), seed=seed, policy_kwargs=policy_kwargs, device="cpu", verbose=0,
                **kwargs)
    callback = Evaluate(env_id, every, episodes)
    t0, c0 = time.time(), time.process_time()
    model.learn(total_timesteps=steps, callback=callback)
    cpu = time.process_time() - c0
    if not callback.curve or callback.curve[-1][0] != steps:
        callback.curve.append([steps, evaluate(model, env_id, episodes)])
    with open(out, "w") as f:
        json.dump({"curve": callback.curve, "cpu_seconds": round(cpu, 2),
                   "train_cpu_seconds": round(cpu - callback.eval_cpu, 2), "wall_seconds": round(time.time() - t0, 2),
                   "versions": {"stable_baselines3": __import__("stable_baselines3").__version__,
                                "torch": torch.__version__, "gymnasium": gym.__version__}}, f)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6], a[7])
