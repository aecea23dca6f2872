"""DQN on CartPole-v1: 5 seeds x 50,000 env steps; steps to eval return >= 475 and wall time per seed.

    python -m bench.dqn            (or: make bench BENCH=dqn)
"""

from __future__ import annotations

import argparse

from bench.common import plot_curves, spread, train_seed, write_results

THRESHOLD = 475.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=50_000)
    args = p.parse_args()
    overrides = ["experiment=dqn_cartpole", f"total_steps={args.steps}"]
    seeds = [train_seed("dqn_cartpole", overrides, s, THRESHOLD) for s in args.seeds]
    reached = [r["steps_to_threshold"] for r in seeds]
    write_results("dqn_cartpole", {
        "command": "python -m bench.dqn", "overrides": overrides,
        "budget": {"env_steps": args.steps, "eval_every": 2500, "eval_episodes": 20},
        "threshold": THRESHOLD, "seeds": seeds,
        "summary": {
            "seeds_reaching_threshold": sum(r is not None for r in reached), "n_seeds": len(seeds),
            "steps_to_threshold": spread(reached), "final_return": spread([r["final"] for r in seeds]),
            "wall_seconds": spread([r["wall_seconds"] for r in seeds]),
            "env_steps_per_second": spread([r["env_steps_per_second"] for r in seeds]),
        },
    })
    plot_curves("dqn_cartpole", {"DQN": seeds}, THRESHOLD)


if __name__ == "__main__":
    main()
