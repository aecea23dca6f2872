"""Curiosity: DQN with RND / ICM against plain DQN at the same budget, on MountainCar-v0 (100k env steps)
or on the sparse grid world of conf/experiment/dqn_gridworld.yaml (20k env steps).

Per seed: env steps until eval/return_mean reaches the threshold (MountainCar -150, grid world 1 = the
greedy policy gets to the goal; or null), final eval return, wall time and CPU seconds, env steps/s, the
first env step at which a training episode reached the goal, the final state-visitation coverage and the
eval curve. MountainCar runs' position x velocity visitation images stay in their run dirs
(outputs/bench/curiosity[_gridworld]_<variant>/seed<N>/coverage/); the final ones are copied next to the results.

    python -m bench.curiosity                                   # MountainCar: rnd + dqn, 5 seeds each
    python -m bench.curiosity --variants rnd icm dqn --seeds 0 1 --steps 100000
    python -m bench.curiosity --env gridworld --variants rnd icm dqn
    python -m bench.curiosity --variants rnd icm dqn --reuse    # one results file from runs made apart
    python -m bench.curiosity --name curiosity_timing --variants rnd icm dqn --seeds 0   # wall time, one at a time
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import bench.common
from bench.common import RESULTS, RUNS, curve, plot_curves, read_run, spread, train_seed, write_results

ENVS = {  # results name, run-dir prefix, eval threshold, default budget
    "mountaincar": ("curiosity_mountaincar", "curiosity", -150.0, 100_000),
    "gridworld": ("curiosity_gridworld", "curiosity_gridworld", 1.0, 20_000),
}
LABELS = {"dqn": "DQN", "rnd": "DQN+RND", "icm": "DQN+ICM"}


def exploration(name: str, seed: int) -> dict:
    """First goal step, coverage (final, and its curve) and the last visitation image of one finished run."""
    run_dir = RUNS / name / f"seed{seed}"
    rows = read_run(run_dir)["rows"]
    last = lambda key: next((r[key] for r in reversed(rows) if key in r), None)
    goal = last("intrinsic/first_goal_step")
    image = last("intrinsic/visits")
    copy = None
    if image:
        copy = RESULTS / f"{name}_seed{seed}_visits.png"
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / image, copy)
    return {"first_goal_step": None if goal is None else int(goal), "coverage_final": last("intrinsic/coverage"),
            "coverage_curve": curve(rows, "intrinsic/coverage"), "visits_png": None if copy is None else copy.name}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="mountaincar", choices=sorted(ENVS))
    p.add_argument("--variants", nargs="+", default=["rnd", "dqn"], choices=sorted(LABELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=None, help="env steps (default: 100k MountainCar, 20k grid)")
    p.add_argument("--name", default=None,
                   help="results name and run-dir prefix (default curiosity_<env>), e.g. a timing run apart")
    p.add_argument("--reuse", action="store_true",
                   help="take finished run dirs of the same command instead of training again (their timings kept)")
    p.add_argument("--no-lock", action="store_true",
                   help="do not queue on /tmp/wm-bench.lock (other benches' runs may overlap: timings noisier)")
    args = p.parse_args()
    results_name, prefix, threshold, default_steps = ENVS[args.env]
    if args.name:
        results_name = prefix = args.name
    args.steps = args.steps or default_steps
    if args.no_lock:  # train_seed still serialises our own runs, on a private lock
        bench.common.LOCK = Path(f"/tmp/wm-bench-curiosity-{'-'.join(args.variants)}.lock")
    results, groups = {}, {v: [] for v in args.variants}
    for s in args.seeds:  # seeds outer, variants inner: a stopped benchmark still has them side by side
        for variant in args.variants:
            name = f"{prefix}_{variant}"
            rec = train_seed(name, overrides(args.env, variant, args.steps), s, threshold, reuse=args.reuse)
            rec.update(exploration(name, s), shared_bench_lock=not args.no_lock)
            groups[variant].append(rec)
            results[variant] = summarize(args.env, variant, args.steps, groups[variant])
            write_results(results_name, _payload(args, threshold, results))  # partial results survive a stop
            plot_curves(results_name, {LABELS[v]: recs for v, recs in groups.items() if recs}, threshold)


def overrides(env: str, variant: str, steps: int) -> list[str]:
    return [f"experiment={variant}_{env}", f"total_steps={steps}", "device=cpu", "device.threads=1"]


def summarize(env: str, variant: str, steps: int, seeds: list[dict]) -> dict:
    return {
        "overrides": overrides(env, variant, steps), "seeds": seeds,
        "summary": {
            "seeds_reaching_threshold": sum(r["steps_to_threshold"] is not None for r in seeds),
            "n_seeds": len(seeds), "steps_to_threshold": spread([r["steps_to_threshold"] for r in seeds]),
            "final_return": spread([r["final"] for r in seeds]),
            "first_goal_step": spread([r["first_goal_step"] for r in seeds]),
            "coverage_final": spread([r["coverage_final"] for r in seeds]),
            "wall_seconds": spread([r["wall_seconds"] for r in seeds]),
            "cpu_seconds": spread([r["cpu_seconds"] for r in seeds]),
            "env_steps_per_second": spread([r["env_steps_per_second"] for r in seeds]),
        },
    }


def _payload(args, threshold: float, results: dict) -> dict:
    seeds = " ".join(map(str, args.seeds))
    return {
        "command": f"python -m bench.curiosity --env {args.env}" + (f" --name {args.name}" if args.name else "")
                   + f" --variants {' '.join(args.variants)} "
                   f"--seeds {seeds} --steps {args.steps}" + (" --reuse" if args.reuse else "")
                   + (" --no-lock" if args.no_lock else ""),
        "budget": {"env_steps": args.steps, "eval": "see the presets (experiment=<variant>_<env>)"},
        "threshold": threshold, "note": "machine shared with other jobs; see loadavg per seed (cpu_seconds is the run's own)",
        "variants": results,
    }


if __name__ == "__main__":
    main()
