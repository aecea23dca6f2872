"""wm's offline agents against d3rlpy's on the same CartPole dataset files (issue 18).

    python -m bench.offline_data                    # first: the datasets
    python -m bench.peers_d3rlpy [--seeds 0 1 2]    # -> results/peers_d3rlpy_cartpole.json + .png

d3rlpy 2.8.1 lives in its own venv (outputs/venvs/d3rlpy, made once here; it pins gymnasium 1.0.0 and pulls gym),
never in the project's install; bench/peers/run_d3rlpy.py reads the Minari files with h5py. Its discrete agents:
BC (DiscreteBC), CQL (DiscreteCQL) and DT (DiscreteDecisionTransformer), sized like wm's (BC 2 x 256, DT width 64,
2 layers, 1 head, context 20, lr 1e-4 after a warm-up of 200 steps' tokens; CQL lr 3e-4, target copied every 100
steps so that 2,000 steps see it move); d3rlpy has no discrete IQL. Each run: 2,000 optimizer steps, 10 greedy
episodes every 500, DT conditioned on the expert's return 500; the score is the normalised return (0 = random, 100
= expert) averaged over the last 3 evaluations, as in bench.offline. wm's BC, 10%-BC and DT are bench.offline's
runs (reused when their run dirs are there), run alternately with d3rlpy's for each dataset and seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from bench import offline
from bench.causal_pc import peer_python
from bench.common import ROOT, RUNS, iqm_interval, save_figure, spread, write_results

PACKAGES = ["d3rlpy==2.8.1", "torch==2.13.0", "h5py"]
RUNNER = ROOT / "bench" / "peers" / "run_d3rlpy.py"
PEERS = {"d3rlpy BC": "bc", "d3rlpy CQL": "cql", "d3rlpy DT": "dt"}
STEPS, EVERY, EPISODES = 2000, 500, 10


def peer_run(root: Path, dataset: str, algo: str, seed: int) -> dict:
    out = RUNS / f"peers_d3rlpy_{dataset}_{algo}" / f"seed{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        python = peer_python("d3rlpy", PACKAGES)
        proc = subprocess.Popen([str(python), str(RUNNER), algo, str(root / "wm" / f"cartpole-{dataset}-v0"),
                                 str(seed), str(STEPS), str(EVERY), str(EPISODES), str(out)],
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"d3rlpy {algo} on {dataset} seed {seed} failed:\n{err[-3000:]}")
    rec = json.loads(out.read_text())
    scores = [s for _, _, s in rec["curve"]]
    return {"score": round(float(np.mean(scores[-3:])), 2), "curve": rec["curve"],
            "train_cpu_seconds": rec["train_cpu_seconds"], "wall_seconds": rec["wall_seconds"]}


def plot(table: dict, agents: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(agents)
    for i, agent in enumerate(agents):
        med = [table[d][agent]["score"]["median"] for d in offline.DATASETS]
        lo = [m - table[d][agent]["score"]["min"] for m, d in zip(med, offline.DATASETS)]
        hi = [table[d][agent]["score"]["max"] - m for m, d in zip(med, offline.DATASETS)]
        ax.bar(np.arange(4) + i * width, med, width, yerr=[lo, hi], capsize=2, label=agent, color=f"C{i}")
    ax.set_xticks(np.arange(4) + 0.4 - width / 2, offline.DATASETS)
    ax.set_ylabel("normalised score (median, min-max over seeds)")
    ax.set_title("CartPole-v1 offline: wm vs d3rlpy on the same datasets", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, "peers_d3rlpy_cartpole")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "datasets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    runs: dict[str, dict[str, list[dict]]] = {d: {} for d in offline.DATASETS}
    for dataset in offline.DATASETS:
        for seed in args.seeds:  # alternating: every agent of a dataset and seed before the next
            for agent in offline.AGENTS:
                runs[dataset].setdefault(f"wm {agent}", []).append(offline.job(args.root, dataset, agent, seed))
            for label, algo in PEERS.items():
                runs[dataset].setdefault(label, []).append(peer_run(args.root, dataset, algo, seed))
        print(dataset, {a: [r["score"] for r in rs] for a, rs in runs[dataset].items()}, flush=True)
    agents = list(runs[offline.DATASETS[0]])
    table = {d: {a: {"score": spread([r["score"] for r in rs]), "score_iqm": iqm_interval([r["score"] for r in rs]),
                     "wall_seconds": spread([r["wall_seconds"] for r in rs])} for a, rs in runs[d].items()}
             for d in offline.DATASETS}
    goal = {d: table[d]["wm DT"]["score"]["median"] >= table[d]["d3rlpy DT"]["score"]["median"]
            for d in offline.DATASETS}
    plot(table, agents)
    path = write_results("peers_d3rlpy_cartpole", {
        "command": f"python -m bench.peers_d3rlpy --seeds {' '.join(map(str, args.seeds))}",
        "budget": {"optimizer_steps": STEPS, "eval_every": EVERY, "eval_episodes": EPISODES,
                   "score": "normalised return, mean of the last 3 evaluations"},
        "packages": PACKAGES, "goal_wm_dt_at_least_d3rlpy_dt_by_median": goal, "table": table,
        "scores": {d: {a: [r["score"] for r in rs] for a, rs in runs[d].items()} for d in offline.DATASETS}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
