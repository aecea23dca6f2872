"""Curiosity for Dreamer: model=rssm agent=actor_critic with Plan2Explore latent disagreement
(experiment=dreamer_p2e_gridworld) against plain Dreamer (experiment=dreamer_gridworld) at the same budget on
the sparse 15x15 grid world (reward 1 only at the far corner, 28 steps away; 50-step episodes).

Per seed (through bench.common.train_seed, like bench.curiosity): the first env step at which a training
episode reached the goal, the final fraction of cells visited, the eval return (1 = the greedy policy walks
to the goal), env steps until it is 1 (or null), wall and CPU seconds, the eval curve and the coverage curve
(fraction of cells visited vs env steps, plotted in the PNG); the run's visitation image (the first
evaluation's, at 2,500 steps) is copied next to the results. Writes bench/results/curiosity_dreamer.json + .png.

    python -m bench.curiosity_dreamer                          # 3 seeds x (dreamer_p2e, dreamer), 12k env steps
    python -m bench.curiosity_dreamer --seeds 0 1 2 3 4 --steps 20000 --no-lock
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bench.common
from bench.common import RUNS, curve, plot_curves, read_run, spread, train_seed, write_results
from bench.curiosity import exploration, overrides, summarize

NAME, ENV, THRESHOLD = "curiosity_dreamer", "gridworld", 1.0
AT = (2500, 6000)  # coverage reported at these env steps too (and at the end)
LABELS = {"dreamer_p2e": "Dreamer+P2E", "dreamer": "Dreamer"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variants", nargs="+", default=list(LABELS), choices=list(LABELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=12_000, help="env steps per run")
    p.add_argument("--reuse", action="store_true", help="take completed run dirs of the same command")
    p.add_argument("--no-lock", action="store_true",
                   help="do not queue on /tmp/wm-bench.lock (other benches' runs may overlap: timings noisier)")
    args = p.parse_args()
    if args.no_lock:  # train_seed still serialises our own runs, on a private lock
        bench.common.LOCK = Path("/tmp/wm-bench-curiosity-dreamer.lock")
    results, groups = {}, {v: [] for v in args.variants}
    for s in args.seeds:  # seeds outer, variants inner: a stopped benchmark still has them side by side
        for variant in args.variants:
            name = f"curiosity_{variant}_{ENV}"
            rec = train_seed(name, overrides(ENV, variant, args.steps), s, THRESHOLD, reuse=args.reuse)
            rec.update(exploration(name, s), shared_bench_lock=not args.no_lock,
                       coverage_curve=curve(read_run(RUNS / name / f"seed{s}")["rows"], "intrinsic/coverage"))
            groups[variant].append(rec)
            results[variant] = summarize(ENV, variant, args.steps, groups[variant])
            results[variant]["summary"].update({f"coverage_at_{n}": spread([at(r["coverage_curve"], n) for r in
                                                                           groups[variant]]) for n in AT})
            write_results(NAME, payload(args, results))  # partial results survive a stop
            plot_curves(NAME, {LABELS[v]: [{"curve": r["coverage_curve"]} for r in recs]
                               for v, recs in groups.items() if recs}, ylabel="fraction of cells visited")


def at(points: list[list[float]], step: int) -> float | None:
    """The last value logged at or before ``step``."""
    before = [v for s, v in points if s <= step]
    return before[-1] if before else None


def payload(args, results: dict) -> dict:
    return {
        "command": f"python -m bench.curiosity_dreamer --variants {' '.join(args.variants)} "
                   f"--seeds {' '.join(map(str, args.seeds))} --steps {args.steps}"
                   + (" --reuse" if args.reuse else "") + (" --no-lock" if args.no_lock else ""),
        "budget": {"env_steps": args.steps, "eval": "every 2,500 env steps, 1 greedy episode (see the presets)"},
        "threshold": THRESHOLD,
        "note": "machine shared with other jobs; see loadavg per seed. The PNG plots the coverage curves "
                "(fraction of cells visited); the eval curves are in the seeds' records",
        "variants": results,
    }


if __name__ == "__main__":
    main()
