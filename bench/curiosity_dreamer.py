"""Curiosity for Dreamer: model=rssm agent=actor_critic with Plan2Explore latent disagreement
(experiment=dreamer_p2e_<env>) against plain Dreamer (experiment=dreamer_<env>) at the same budget on the
sparse 15x15 grid world (reward 1 only at the far corner, 28 steps away; 50-step episodes; 12k env steps) or
on MountainCar-v0 (`--env mountaincar`, 15k env steps, threshold -150).

Per seed (through bench.common.train_seed, like bench.curiosity): the first env step at which a training
episode reached the goal, the final fraction of cells visited, the eval return (1 = the greedy policy walks
to the goal; MountainCar: >= -150), env steps until then (or null), wall and CPU seconds, the eval curve and
the coverage curve (fraction of cells / position x velocity bins visited vs env steps, plotted in the PNG);
the run's last visitation image (grid world: the first evaluation's, at 2,500 steps) is copied next to the
results. Writes bench/results/curiosity_dreamer.json + .png (MountainCar: curiosity_dreamer_mountaincar.*).

    python -m bench.curiosity_dreamer                          # 3 seeds x (dreamer_p2e, dreamer), 12k env steps
    python -m bench.curiosity_dreamer --seeds 0 1 2 3 4 --steps 20000 --no-lock
    python -m bench.curiosity_dreamer --env mountaincar          # 3 seeds x both, 15k env steps
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bench.common
from bench.common import plot_curves, spread, train_seed, write_results
from bench.curiosity import exploration, overrides, summarize

ENVS = {"gridworld": ("curiosity_dreamer", 1.0, 12_000),  # results name, eval threshold, default budget
        "mountaincar": ("curiosity_dreamer_mountaincar", -150.0, 15_000)}
AT = (2500, 6000)  # coverage reported at these env steps too (and at the end)
LABELS = {"dreamer_p2e": "Dreamer+P2E", "dreamer": "Dreamer"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="gridworld", choices=sorted(ENVS))
    p.add_argument("--variants", nargs="+", default=list(LABELS), choices=list(LABELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="env steps per run (default: 12k grid, 15k MountainCar)")
    p.add_argument("--reuse", action="store_true", help="take completed run dirs of the same command")
    p.add_argument("--no-lock", action="store_true",
                   help="do not queue on /tmp/wm-bench.lock (other benches' runs may overlap: timings noisier)")
    args = p.parse_args()
    name_out, threshold, default_steps = ENVS[args.env]
    args.steps = args.steps or default_steps
    if args.no_lock:  # train_seed still serialises our own runs, on a private lock
        bench.common.LOCK = Path("/tmp/wm-bench-curiosity-dreamer.lock")
    results, groups = {}, {v: [] for v in args.variants}
    for s in args.seeds:  # seeds outer, variants inner: a stopped benchmark still has them side by side
        for variant in args.variants:
            name = f"curiosity_{variant}_{args.env}"
            rec = train_seed(name, overrides(args.env, variant, args.steps), s, threshold, reuse=args.reuse)
            rec.update(exploration(name, s), shared_bench_lock=not args.no_lock)
            groups[variant].append(rec)
            results[variant] = summarize(args.env, variant, args.steps, groups[variant])
            results[variant]["summary"].update({f"coverage_at_{n}": spread([at(r["coverage_curve"], n) for r in
                                                                           groups[variant]]) for n in AT})
            write_results(name_out, payload(args, threshold, results))  # partial results survive a stop
            plot_curves(name_out, {LABELS[v]: [{"curve": r["coverage_curve"]} for r in recs]
                               for v, recs in groups.items() if recs}, ylabel="fraction of cells (bins) visited")


def at(points: list[list[float]], step: int) -> float | None:
    """The last value logged at or before ``step``."""
    before = [v for s, v in points if s <= step]
    return before[-1] if before else None


def payload(args, threshold: float, results: dict) -> dict:
    return {
        "command": f"python -m bench.curiosity_dreamer --env {args.env} --variants {' '.join(args.variants)} "
                   f"--seeds {' '.join(map(str, args.seeds))} --steps {args.steps}"
                   + (" --reuse" if args.reuse else "") + (" --no-lock" if args.no_lock else ""),
        "budget": {"env_steps": args.steps, "eval": "every 2,500 env steps (see the presets)"},
        "threshold": threshold,
        "note": "machine shared with other jobs; see loadavg per seed. The PNG plots the coverage curves "
                "(fraction of cells visited); the eval curves are in the seeds' records",
        "variants": results,
    }


if __name__ == "__main__":
    main()
