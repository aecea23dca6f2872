"""Offline RL on the CartPole datasets of bench.offline_data: BC, 10%-BC and Decision Transformer, 3 seeds each.

    python -m bench.offline_data                  # first: the datasets (expert, medium, medium-replay, medium-expert)
    python -m bench.offline [--parallel 2]        # -> results/offline_cartpole.json + .png

Every run: `python train.py model=none data=minari data.source=<dataset dir> agent=...` for 2,000 optimizer
steps, evaluated every 500 on 10 episodes; its score is the mean of its last 3 evaluations, normalised with
the dataset's reference returns (0 = random, 100 = expert). DT is evaluated at target returns 500, 300 and 100
(its score: at 500), which gives the return-conditioning curve (achieved vs target). Sizes for a CPU: DT K 20,
width 64, 2 layers, 1 head (the paper's 128 x 3 layers costs ~150-300 ms per step on one core here), returns to
go / 500, warm-up 200 steps; BC 2 x 256.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import ROOT, iqm_interval, read_run, save_figure, spread, train_seed, write_results
from wm import report

DATASETS = ("expert", "medium", "medium-replay", "medium-expert")
TARGETS = (500, 300, 100)
AGENTS = {
    "BC": ["agent=bc"],
    "10%-BC": ["agent=bc", "agent.top=0.1"],
    "DT": ["agent=decision_transformer", "agent.embed=64", "agent.layers=2", "agent.rtg_scale=500",
           "agent.warmup=200", "agent.max_timestep=500",
           f"agent.targets=[{','.join(map(str, TARGETS))}]"],
}
BUDGET = ["model=none", "data=minari", "total_steps=2000", "eval.every=500", "eval.episodes=10", "eval.envs=10",
          "checkpoint.every=2000", "log_every=250"]


def job(root: Path, dataset: str, agent: str, seed: int) -> dict:
    name = f"offline_cartpole_{dataset}_{agent.replace('%', 'pct').lower()}"
    rec = train_seed(name, [*BUDGET, f"data.source={root / 'wm' / f'cartpole-{dataset}-v0'}", *AGENTS[agent]], seed,
                     None, metric="eval/normalized_score", reuse=True, lock=False)
    rows = read_run(ROOT / "outputs" / "bench" / name / f"seed{seed}")["rows"]
    evals = [r for r in rows if "eval/normalized_score" in r]
    out = {"dataset": dataset, "agent": agent, "seed": seed,
           "score": round(report.final_of([r["eval/normalized_score"] for r in evals], 3), 2),
           "return": round(report.final_of([r["eval/return_mean"] for r in evals], 3), 2),
           "curve": rec["curve"], "wall_seconds": rec["wall_seconds"], "cpu_seconds": rec.get("cpu_seconds")}
    if agent == "DT":
        out["conditioning"] = {t: float(np.mean([r[f"eval/return_at_target_{t}"] for r in evals[-3:]])) for t in TARGETS}
    return out


def plot(results: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, dataset in enumerate(DATASETS):
        runs = [r for r in results if r["dataset"] == dataset and r["agent"] == "DT"]
        achieved = np.array([[r["conditioning"][t] for t in TARGETS] for r in runs])
        ax.errorbar(TARGETS, achieved.mean(0), yerr=achieved.std(0), fmt="o-", color=f"C{i}", capsize=3,
                    label=dataset)
    ax.plot([0, 500], [0, 500], "k--", lw=1, label="achieved = target")
    ax.set_xlabel("target return (return to go at t = 0)")
    ax.set_ylabel("achieved return (mean of the last 3 evals, 3 seeds)")
    ax.set_title("Decision Transformer on CartPole-v1: return conditioning", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, "offline_cartpole")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "datasets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    args = p.parse_args()
    missing = [d for d in DATASETS if not (args.root / "wm" / f"cartpole-{d}-v0").exists()]
    if missing:
        raise SystemExit(f"error: no dataset {', '.join(missing)} under {args.root}: run python -m bench.offline_data")
    jobs = [(d, a, s) for d in DATASETS for a in AGENTS for s in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda j: job(args.root, *j), jobs))
    table = {d: {a: {"score": spread([r["score"] for r in results if r["dataset"] == d and r["agent"] == a]),
                     "score_iqm": iqm_interval([r["score"] for r in results if r["dataset"] == d and r["agent"] == a]),
                     "wall_seconds": spread([r["wall_seconds"] for r in results
                                             if r["dataset"] == d and r["agent"] == a])}
                 for a in AGENTS} for d in DATASETS}
    write_results("offline_cartpole", {
        "command": "python -m bench.offline " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "root"),
        "budget": BUDGET, "agents": AGENTS, "targets": TARGETS, "table": table, "runs": results})
    plot(results)
    for d in DATASETS:
        print(d, {a: table[d][a]["score"]["median"] for a in AGENTS})


if __name__ == "__main__":
    main()
