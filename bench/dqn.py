"""DQN on CartPole-v1: 5 seeds x 50,000 env steps. Primary figure: final return per seed (the mean of the last
3 evaluations, 20 episodes each, every 2,500 steps); beside it steps to eval return >= 475, stability (the share
of evaluations after the first at 475 that stay within 5% of it) and wall time per seed.

    python -m bench.dqn            (or: make bench BENCH=dqn)
"""

from __future__ import annotations

import argparse
import sys

from bench.common import iqm_interval, plot_curves, spread, train_seed, write_results
from wm import report

THRESHOLD = 475.0
LAST = 3  # evaluations averaged into the final return


def final_return(curve: list[list[float]]) -> float:
    return report.final_of([v for _, v in curve], LAST)


def stability(curve: list[list[float]]) -> float | None:
    return report.stability([v for _, v in curve], THRESHOLD)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--name", default="dqn_cartpole", help="results file name (e.g. a timing-only rerun)")
    p.add_argument("--reuse", action="store_true", help="keep completed seed run dirs from an earlier run")
    args = p.parse_args()
    overrides = ["experiment=dqn_cartpole", f"total_steps={args.steps}"]
    seeds = [train_seed(args.name, overrides, s, THRESHOLD, reuse=args.reuse) for s in args.seeds]
    for r in seeds:
        r["final_last_eval"] = r.pop("final")
        r["final"] = final_return(r["curve"])
        r["stability"] = stability(r["curve"])
        print(f"seed {r['seed']}: final (mean of last {LAST} evals) {r['final']:.1f}", flush=True)
    reached = [r["steps_to_threshold"] for r in seeds]
    write_results(args.name, {
        "command": "python -m bench.dqn " + " ".join(sys.argv[1:]), "overrides": overrides,
        "budget": {"env_steps": args.steps, "eval_every": 2500, "eval_episodes": 20},
        "threshold": THRESHOLD, "final": f"mean of the last {LAST} evaluations", "seeds": seeds,
        "summary": {
            "final_return": spread([r["final"] for r in seeds]),
            "final_return_iqm": iqm_interval([r["final"] for r in seeds]),
            "seeds_final_at_threshold": sum(r["final"] >= THRESHOLD for r in seeds), "n_seeds": len(seeds),
            "seeds_reaching_threshold": sum(r is not None for r in reached),
            "steps_to_threshold": spread(reached), "stability": spread([r["stability"] for r in seeds]),
            "wall_seconds": spread([r["wall_seconds"] for r in seeds]),
            "env_steps_per_second": spread([r["env_steps_per_second"] for r in seeds]),
        },
    })
    plot_curves(args.name, {"DQN": seeds}, THRESHOLD)


if __name__ == "__main__":
    main()
