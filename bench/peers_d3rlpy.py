"""wm's offline agents against d3rlpy's on the same dataset files (issue 18).

    python -m bench.offline_data [--task hopper]                  # first: the datasets
    python -m bench.peers_d3rlpy [--task hopper] [--seeds 0 1 2]  # -> results/peers_d3rlpy_<task>.json + .png

d3rlpy 2.8.1 lives in its own venv (outputs/venvs/d3rlpy, made once here; it pins gymnasium 1.0.0 and pulls gym),
never in the project's install; bench/peers/run_d3rlpy.py reads the Minari files with h5py. Its agents, set like
wm's (bench.offline's sizes and DT settings):
- CartPole (discrete): DiscreteBC (2 x 256), DiscreteCQL (lr 3e-4, target copied every 100 steps) and
  DiscreteDecisionTransformer (width 64, 2 layers, 1 head, context 5, lr 6e-4 after a warm-up of 200 steps' tokens,
  cosine decay over the run); d3rlpy has no discrete IQL. 6,000 optimizer steps, 10 greedy episodes every 1,000.
- Hopper (continuous): BC (2 x 256), CQL and IQL (d3rlpy's defaults, their papers' MuJoCo settings) and
  DecisionTransformer (width 64, 2 layers, 1 head, context 20, lr 6e-4, cosine decay over the run). 10,000
  optimizer steps, 10 greedy episodes every 2,000.
DT is conditioned on the expert dataset's return; the score is the normalised return (0 = random, 100 = expert)
averaged over the last 3 evaluations, as in bench.offline. wm's BC, 10%-BC and DT are bench.offline's runs (reused
when their run dirs are there), run alternately with d3rlpy's for each dataset and seed.
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
from wm import report

# gymnasium's MuJoCo extra at d3rlpy's gymnasium, mujoco pinned as in the project (dm-control needs < 4)
PACKAGES = ["d3rlpy==2.8.1", "torch==2.13.0", "h5py", "gymnasium[mujoco]==1.0.0", "mujoco>=3.17,<4"]
RUNNER = ROOT / "bench" / "peers" / "run_d3rlpy.py"
PEERS = {"cartpole": {"d3rlpy BC": "bc", "d3rlpy CQL": "cql", "d3rlpy DT": "dt"},
         "hopper": {"d3rlpy BC": "bc", "d3rlpy CQL": "cql", "d3rlpy IQL": "iql", "d3rlpy DT": "dt"}}
EPISODES = 10


def peer_run(root: Path, task: str, dataset: str, algo: str, seed: int) -> dict:
    steps, every = offline.TASKS[task]["steps"], offline.TASKS[task]["every"]
    out = RUNS / f"peers_d3rlpy_{task}_{dataset}_{algo}" / f"seed{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or json.loads(out.read_text())["curve"][-1][0] != steps:  # none yet, or another budget
        python = peer_python("d3rlpy", PACKAGES)
        proc = subprocess.Popen([str(python), str(RUNNER), algo, str(offline.dataset_dir(root, task, dataset)),
                                 str(seed), str(steps), str(every), str(EPISODES), str(out)],
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"d3rlpy {algo} on {task} {dataset} seed {seed} failed:\n{err[-3000:]}")
    rec = json.loads(out.read_text())
    return {"score": round(report.final_of([s for _, _, s in rec["curve"]], 3), 2), "curve": rec["curve"],
            "train_cpu_seconds": rec["train_cpu_seconds"], "wall_seconds": rec["wall_seconds"]}


def plot(table: dict, agents: list[str], task: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(table)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(agents)
    for i, agent in enumerate(agents):
        med = [table[d][agent]["score"]["median"] for d in datasets]
        lo = [m - table[d][agent]["score"]["min"] for m, d in zip(med, datasets)]
        hi = [table[d][agent]["score"]["max"] - m for m, d in zip(med, datasets)]
        ax.bar(np.arange(len(datasets)) + i * width, med, width, yerr=[lo, hi], capsize=2, label=agent, color=f"C{i}")
    ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
    ax.set_ylabel("normalised score (median, min-max over seeds)")
    ax.set_title(f"{task} offline: wm vs d3rlpy on the same datasets", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, f"peers_d3rlpy_{task}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=list(offline.TASKS), default="cartpole")
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "datasets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    datasets = offline.TASKS[args.task]["datasets"]
    runs: dict[str, dict[str, list[dict]]] = {d: {} for d in datasets}
    for dataset in datasets:
        for seed in args.seeds:  # alternating: every agent of a dataset and seed before the next
            for agent in offline.AGENTS:
                runs[dataset].setdefault(f"wm {agent}", []).append(
                    offline.job(args.root, args.task, dataset, agent, seed))
            for label, algo in PEERS[args.task].items():
                runs[dataset].setdefault(label, []).append(peer_run(args.root, args.task, dataset, algo, seed))
        print(dataset, {a: [r["score"] for r in rs] for a, rs in runs[dataset].items()}, flush=True)
    agents = list(runs[datasets[0]])
    table = {d: {a: {"score": spread([r["score"] for r in rs]), "score_iqm": iqm_interval([r["score"] for r in rs]),
                     "wall_seconds": spread([r["wall_seconds"] for r in rs])} for a, rs in runs[d].items()}
             for d in datasets}
    goal = {d: table[d]["wm DT"]["score"]["median"] >= table[d]["d3rlpy DT"]["score"]["median"] for d in datasets}
    plot(table, agents, args.task)
    path = write_results(f"peers_d3rlpy_{args.task}", {
        "command": f"python -m bench.peers_d3rlpy --task {args.task} --seeds {' '.join(map(str, args.seeds))}",
        "budget": {"optimizer_steps": offline.TASKS[args.task]["steps"], "eval_every": offline.TASKS[args.task]["every"],
                   "eval_episodes": EPISODES, "score": "normalised return, mean of the last 3 evaluations"},
        "packages": PACKAGES, "goal_wm_dt_at_least_d3rlpy_dt_by_median": goal, "table": table,
        "scores": {d: {a: [r["score"] for r in rs] for a, rs in runs[d].items()} for d in datasets}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
