"""Train a d3rlpy peer on a wm offline dataset; executed by bench/peers_d3rlpy.py inside the peer venv.

Usage: run_d3rlpy.py ALGO DATASET_DIR SEED STEPS EVAL_EVERY EVAL_EPISODES OUT.json

ALGO: bc | cql | iql | dt. Discrete actions (CartPole): d3rlpy's DiscreteBC, DiscreteCQL, DiscreteDecisionTransformer
(d3rlpy has no discrete IQL); continuous ones (MuJoCo): BC, CQL, IQL, DecisionTransformer.
DATASET_DIR: a Minari dataset directory (data/main_data.hdf5 + data/metadata.json), read with h5py so the peer venv
needs no Minari: each episode's observations minus its last, actions, rewards, terminations, truncations. Every
EVAL_EVERY optimizer steps: EVAL_EPISODES greedy episodes of the dataset's env (gymnasium, seeds 10_000 + k; DT
conditioned on the dataset's reference maximum return), normalised with the metadata's reference returns. OUT
gets the curve and the process CPU seconds spent training (evaluation excluded). Imports only d3rlpy, gymnasium,
h5py and numpy: runs without the project.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import d3rlpy
import gymnasium as gym
import h5py
import numpy as np
import torch


def discrete_settings(steps: int) -> dict:
    """Sized like wm's agents in bench.offline's CartPole runs: BC 2 x 256; DT width 64, 2 layers, 1 head, K 5."""
    k = 5
    return {
        "bc": d3rlpy.algos.DiscreteBCConfig(batch_size=256, learning_rate=1e-3),
        "cql": d3rlpy.algos.DiscreteCQLConfig(batch_size=256, learning_rate=3e-4, target_update_interval=100,
                                              alpha=1.0),
        # d3rlpy schedules the discrete DT's rate by tokens seen (64 x K a step): warm-up over 200 steps' tokens,
        # then its cosine decay over the rest of the run (to 0.1 x lr, its floor; wm's decays to 0)
        "dt": d3rlpy.algos.DiscreteDecisionTransformerConfig(
            batch_size=64, learning_rate=6e-4, context_size=k, max_timestep=1000, num_heads=1, num_layers=2,
            encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=[64]), warmup_tokens=200 * 64 * k,
            final_tokens=steps * 64 * k),
    }


def continuous_settings(steps: int) -> dict:
    """Sized like wm's agents in bench.offline's Hopper runs (BC 2 x 256; DT width 64, 2 layers, 1 head, K 20, lr 6e-4
    decayed over the run); CQL and IQL with d3rlpy's own defaults, which follow their papers' MuJoCo settings."""
    return {
        "bc": d3rlpy.algos.BCConfig(batch_size=256, learning_rate=1e-3),
        "cql": d3rlpy.algos.CQLConfig(batch_size=256),
        "iql": d3rlpy.algos.IQLConfig(batch_size=256),
        # one scheduler per optimizer in d3rlpy: the cosine decay, without wm's 1,000-step warm-up
        "dt": d3rlpy.algos.DecisionTransformerConfig(
            batch_size=64, learning_rate=6e-4, context_size=20, max_timestep=1000, num_heads=1, num_layers=2,
            encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=[64]),
            optim_factory=d3rlpy.optimizers.AdamWFactory(
                weight_decay=1e-4, clip_grad_norm=0.25,
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps))),
    }


def load(directory: Path) -> tuple[d3rlpy.dataset.MDPDataset, dict, bool]:
    """The dataset, its metadata, and whether its actions are discrete (integer actions in the file)."""
    meta = json.loads((directory / "data" / "metadata.json").read_text())
    parts = {k: [] for k in ("obs", "act", "rew", "term", "trunc")}
    with h5py.File(directory / "data" / "main_data.hdf5") as f:
        for name in sorted(f.keys(), key=lambda k: int(k.split("_")[-1])):
            ep = f[name]
            n = len(ep["actions"])
            parts["obs"].append(np.asarray(ep["observations"][:n], np.float32))
            parts["act"].append(np.asarray(ep["actions"]))
            parts["rew"].append(np.asarray(ep["rewards"], np.float32))
            term, trunc = np.asarray(ep["terminations"], bool), np.asarray(ep["truncations"], bool)
            trunc[-1] |= not term[-1]  # an episode the recorder stopped: a timeout, not a terminal
            parts["term"].append(term.astype(np.float32))
            parts["trunc"].append(trunc.astype(np.float32))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    discrete = np.issubdtype(cat["act"].dtype, np.integer)
    space = d3rlpy.ActionSpace.DISCRETE if discrete else d3rlpy.ActionSpace.CONTINUOUS
    actions = cat["act"].astype(np.int64 if discrete else np.float32)
    dataset = d3rlpy.dataset.MDPDataset(cat["obs"], actions, cat["rew"], cat["term"], cat["trunc"],
                                        action_space=space,
                                        action_size=int(actions.max()) + 1 if discrete else actions.shape[1])
    return dataset, meta, discrete


def evaluate(algo, kind: str, env_id: str, episodes: int, target: float, discrete: bool) -> float:
    env = gym.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=10_000 + k)
        actor = algo.as_stateful_wrapper(target_return=target) if kind == "dt" else None
        done, ret, reward = False, 0.0, 0.0
        while not done:
            action = actor.predict(obs, reward) if actor else algo.predict(obs[None])[0]
            obs, reward, term, trunc, _ = env.step(int(action) if discrete else np.asarray(action, np.float32))
            ret, done = ret + float(reward), term or trunc
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


def main(kind: str, directory: str, seed: int, steps: int, every: int, episodes: int, out: str) -> None:
    torch.set_num_threads(1)
    d3rlpy.seed(seed)
    dataset, meta, discrete = load(Path(directory))
    env_id = json.loads(meta["eval_env_spec"])["id"]
    lo, hi = meta["ref_min_score"], meta["ref_max_score"]
    algo = (discrete_settings if discrete else continuous_settings)(steps)[kind].create(device="cpu:0")
    curve, eval_cpu = [], 0.0

    def callback(algo, epoch: int, total_step: int) -> None:
        nonlocal eval_cpu
        if total_step % every == 0:
            t = time.process_time()
            ret = evaluate(algo, kind, env_id, episodes, hi, discrete)
            curve.append([total_step, ret, 100 * (ret - lo) / (hi - lo)])
            eval_cpu += time.process_time() - t

    c0, t0 = time.process_time(), time.time()
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=every, show_progress=False, save_interval=10**9,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), callback=callback)
    cpu = time.process_time() - c0
    Path(out).write_text(json.dumps({
        "curve": curve, "train_cpu_seconds": round(cpu - eval_cpu, 2), "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(time.time() - t0, 2), "target_return": hi,
        "versions": {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "gymnasium": gym.__version__}}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), a[6])
