"""Offline RL on the datasets of bench.offline_data: BC, 10%-BC and Decision Transformer, 3 seeds each.

    python -m bench.offline_data [--task hopper]              # first: the datasets
    python -m bench.offline [--task hopper] [--parallel 2]    # -> results/offline_<task>.json + .png

Every run: `python train.py model=none data=minari data.source=<dataset dir> agent=...`; its score is the mean of
its last 3 evaluations (10 episodes each), normalised with the dataset's reference returns (0 = random, 100 =
expert). DT is evaluated at target returns of 1, 0.6 and 0.2 x the expert dataset's return (its score: at the
first), which gives the return-conditioning curve (achieved vs target). Sizes for a CPU: DT width 64, 2 layers,
1 head (the paper's 128 x 3 layers costs ~150-300 ms per step on one core here); BC 2 x 256.
- CartPole-v1 (all four datasets): 6,000 optimizer steps, evaluated every 1,000. DT: returns to go / 500, context
  5 and lr 6e-4 with a 200-step warm-up and a cosine decay to 0 over the run (the screen in docs/offline.md: the
  paper's K 20 swings from one evaluation to the next at this rate, lr 1e-4 is far from done at this budget).
- Hopper-v5 (medium and medium-replay, the CORL anchors): 10,000 optimizer steps (the paper's DT: 100k; CORL's
  BC, CQL and IQL: 1M), evaluated every 2,000. DT: the paper's K 20 and returns to go / 1000, with CartPole's rate and schedule (6e-4, cosine over
  the run, warm-up 1,000), not screened on Hopper.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import ROOT, RUNS, iqm_interval, read_run, save_figure, spread, train_seed, write_results
from wm import report

DATASETS = ("expert", "medium", "medium-replay", "medium-expert")
TARGET_SHARES = (1.0, 0.6, 0.2)  # DT's evaluation targets, as shares of the expert dataset's return
TASKS = {  # per task: datasets, optimizer steps, evaluation cadence, DT's settings ({steps}: the run's)
    "cartpole": {"datasets": DATASETS, "steps": 6000, "every": 1000,
                 "dt": ["agent.rtg_scale=500", "agent.context=5", "agent.lr=6e-4", "agent.warmup=200",
                        "agent.lr_decay_steps={steps}", "agent.max_timestep=500"]},
    "hopper": {"datasets": ("medium", "medium-replay"), "steps": 10_000, "every": 2000,
               "dt": ["agent.rtg_scale=1000", "agent.context=20", "agent.lr=6e-4", "agent.warmup=1000",
                      "agent.lr_decay_steps={steps}", "agent.max_timestep=1000"]},
}
AGENTS = ("BC", "10%-BC", "DT")


def dataset_dir(root: Path, task: str, dataset: str) -> Path:
    return root / "wm" / f"{task}-{dataset}-v0"


def targets(root: Path, task: str) -> list[int]:
    """DT's evaluation targets from the dataset's expert reference return (CartPole: 500, 300, 100)."""
    meta = json.loads((dataset_dir(root, task, TASKS[task]["datasets"][0]) / "data" / "metadata.json").read_text())
    return [round(share * meta["ref_max_score"]) for share in TARGET_SHARES]


def overrides(root: Path, task: str, dataset: str, agent: str) -> list[str]:
    spec = TASKS[task]
    agent_args = {"BC": ["agent=bc"], "10%-BC": ["agent=bc", "agent.top=0.1"],
                  "DT": ["agent=decision_transformer", "agent.embed=64", "agent.layers=2",
                         *(o.format(steps=spec["steps"]) for o in spec["dt"]),
                         f"agent.targets=[{','.join(map(str, targets(root, task)))}]"]}[agent]
    budget = [f"total_steps={spec['steps']}", f"eval.every={spec['every']}", "eval.episodes=10", "eval.envs=10",
              f"checkpoint.every={spec['steps']}", f"log_every={spec['every'] // 2}"]
    return ["model=none", "data=minari", *budget, f"data.source={dataset_dir(root, task, dataset)}", *agent_args]


def job(root: Path, task: str, dataset: str, agent: str, seed: int) -> dict:
    name = f"offline_{task}_{dataset}_{agent.replace('%', 'pct').lower()}"
    rec = train_seed(name, overrides(root, task, dataset, agent), seed, None, metric="eval/normalized_score",
                     reuse=True, lock=False, resume=True)
    rows = read_run(RUNS / name / f"seed{seed}")["rows"]
    evals = [r for r in rows if "eval/normalized_score" in r]
    out = {"dataset": dataset, "agent": agent, "seed": seed,
           "score": round(report.final_of([r["eval/normalized_score"] for r in evals], 3), 2),
           "return": round(report.final_of([r["eval/return_mean"] for r in evals], 3), 2),
           "curve": rec["curve"], "wall_seconds": rec["wall_seconds"], "cpu_seconds": rec.get("cpu_seconds")}
    if agent == "DT":
        out["conditioning"] = {t: float(np.mean([r[f"eval/return_at_target_{t}"] for r in evals[-3:]]))
                               for t in targets(root, task)}
    return out


def plot(results: list[dict], task: str, goals: list[int]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, dataset in enumerate(TASKS[task]["datasets"]):
        runs = [r for r in results if r["dataset"] == dataset and r["agent"] == "DT"]
        achieved = np.array([[r["conditioning"][t] for t in goals] for r in runs])
        ax.errorbar(goals, achieved.mean(0), yerr=achieved.std(0), fmt="o-", color=f"C{i}", capsize=3,
                    label=dataset)
    ax.plot([0, goals[0]], [0, goals[0]], "k--", lw=1, label="achieved = target")
    ax.set_xlabel("target return (return to go at t = 0)")
    ax.set_ylabel("achieved return (mean of the last 3 evals, 3 seeds)")
    ax.set_title(f"Decision Transformer on {task}: return conditioning", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, f"offline_{task}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=list(TASKS), default="cartpole")
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "datasets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    args = p.parse_args()
    datasets = TASKS[args.task]["datasets"]
    missing = [d for d in datasets if not dataset_dir(args.root, args.task, d).exists()]
    if missing:
        raise SystemExit(f"error: no {args.task} dataset {', '.join(missing)} under {args.root}: run "
                         f"python -m bench.offline_data --task {args.task}")
    jobs = [(d, a, s) for d in datasets for a in AGENTS for s in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda j: job(args.root, args.task, *j), jobs))

    def scores(d: str, a: str, key: str = "score") -> list:
        return [r[key] for r in results if r["dataset"] == d and r["agent"] == a]

    table = {d: {a: {"score": spread(scores(d, a)), "score_iqm": iqm_interval(scores(d, a)),
                     "wall_seconds": spread(scores(d, a, "wall_seconds"))} for a in AGENTS} for d in datasets}
    goals = targets(args.root, args.task)
    write_results(f"offline_{args.task}", {
        "command": "python -m bench.offline " + " ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                                                         for k, v in vars(args).items() if k != "root"),
        "budget": {"optimizer_steps": TASKS[args.task]["steps"], "eval_every": TASKS[args.task]["every"],
                   "eval_episodes": 10, "score": "normalised return, mean of the last 3 evaluations"},
        "overrides": {a: overrides(args.root, args.task, datasets[0], a) for a in AGENTS},
        "targets": goals, "table": table, "runs": results})
    plot(results, args.task, goals)
    for d in datasets:
        print(d, {a: table[d][a]["score"]["median"] for a in AGENTS})


if __name__ == "__main__":
    main()
