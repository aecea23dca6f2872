"""Sutton & Barto chapter 8 figures with wm's grid envs and tabular Dyna-Q / Dyna-Q+.

    flock /tmp/wm-bench.lock python -m bench.dyna             # the three figures + speed, ~2 min
    python -m bench.dyna --cartpole --reuse                   # DQN vs Dyna-DQN, 5 seeds x 50k steps, train.py
    python -m bench.dyna --wandb                              # also log the PNGs to W&B (WANDB_MODE respected)

Writes bench/results/dyna.json and dyna_fig8_2.png, dyna_fig8_4.png, dyna_fig8_5.png; with --cartpole
bench/results/dyna_cartpole.json and dyna_cartpole.png.

The tabular algorithm (``wm.agents.dyna_q.TabularDynaQ``, the same class ``agent=dyna_q`` wraps) is
driven directly in a python loop on the registered envs (``gym.make(id).unwrapped``): 30 runs x 3
settings through train.py would spend its time in run-directory bookkeeping, not in Dyna.

* Figure 8.2 (Example 8.1): Dyna maze, steps per episode over 50 episodes, n = 0, 5, 50, 30 runs,
  alpha = 0.1, epsilon = 0.1, gamma = 0.95, Q0 = 0, greedy ties broken at random.
* Figures 8.4 / 8.5 (Examples 8.2 / 8.3): cumulative reward of Dyna-Q vs Dyna-Q+ on the blocking
  maze (3000 steps, wall moves at 1000) and the shortcut maze (6000 steps, shortcut opens at 3000).
  The book gives no parameters for these; ours are in the results file (``settings``).
* Speed: planning updates per second of the pure-python planner (uniform, Dyna-Q+, prioritized).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import wm.envs  # noqa: F401  (registers the grid worlds)
from bench.common import RESULTS, ROOT, git_commit, machine, plot_curves, spread, train_seed, write_results
from wm.agents.dyna_q import TabularDynaQ
from wm.envs.grid import GridMaze, shortest_path


# ---- drivers --------------------------------------------------------------------------------------
def make(env_id: str, **kwargs) -> GridMaze:
    return gym.make(env_id, **kwargs).unwrapped


def agent_for(env: GridMaze, seed: int, **kw) -> TabularDynaQ:
    return TabularDynaQ(env.observation_space.n, env.action_space.n, seed=seed, **kw)


def run_episodes(env: GridMaze, dq: TabularDynaQ, episodes: int, max_steps: int = 1_000_000) -> list[int]:
    """Steps per episode (the book's Figure 8.2 protocol: episodes restart at S, no time limit)."""
    lengths = []
    for _ in range(episodes):
        s, _ = env.reset()
        for k in range(1, max_steps + 1):
            a = dq.act(s)
            s2, r, term, _, _ = env.step(a)
            dq.observe(s, a, r, s2, term)
            s = s2
            if term:
                break
        lengths.append(k)
    return lengths


def run_steps(env: GridMaze, dq: TabularDynaQ, steps: int, watch: tuple[int, int] | None = None,
              watch_after: int = 0) -> tuple[np.ndarray, int | None]:
    """Cumulative reward after each of ``steps`` real steps (episodes restart at S on reaching G).

    Also returns the first total step > ``watch_after`` at which the agent entered cell ``watch``.
    """
    cum, total, first = np.zeros(steps, np.float32), 0.0, None
    s, _ = env.reset()
    for t in range(steps):
        a = dq.act(s)
        s2, r, term, _, info = env.step(a)
        dq.observe(s, a, r, s2, term)
        total += r
        cum[t] = total
        if watch is not None and first is None and t + 1 > watch_after and info["pos"] == watch:
            first = t + 1
        s = s2
        if term:
            s, _ = env.reset()
    return cum, first


def greedy_path(env: GridMaze, dq: TabularDynaQ, limit: int = 200) -> list[tuple[int, int]]:
    """Cells visited by the greedy policy from S (ties at random), up to ``limit`` steps."""
    s, info = env.reset()
    cells = [info["pos"]]
    for _ in range(limit):
        s, _, term, _, info = env.step(dq.greedy(s))
        cells.append(info["pos"])
        if term:
            break
    return cells


def random_walk_expected_steps(env: GridMaze) -> float:
    """Exact expected length of a uniform random walk from S to G (linear system over the cells)."""
    rows, cols, walls = env.rows, env.cols, env.walls
    cells = [(r, c) for r in range(rows) for c in range(cols) if not walls[r, c] and (r, c) != env.goal]
    index = {cell: i for i, cell in enumerate(cells)}
    A, b = np.eye(len(cells)), np.ones(len(cells))
    for (r, c), i in index.items():
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nr, nc = r + dr, c + dc
            nxt = (nr, nc) if 0 <= nr < rows and 0 <= nc < cols and not walls[nr, nc] else (r, c)
            if nxt != env.goal:
                A[i, index[nxt]] -= 0.25
    return float(np.linalg.solve(A, b)[index[env.start]])


# ---- experiments ----------------------------------------------------------------------------------
def figure_8_2(runs: int, episodes: int, ns: list[int]) -> dict:
    hp = {"alpha": 0.1, "epsilon": 0.1, "gamma": 0.95}
    out = {"settings": {"env": "wm/DynaMaze-v0", "runs": runs, "episodes": episodes, **hp,
                        "planning_steps": ns, "seeds": list(range(runs))}, "per_n": {}}
    env0 = make("wm/DynaMaze-v0")
    out["shortest_path"] = shortest_path(env0.walls, env0.start, env0.goal)
    out["random_walk_expected_first_episode"] = random_walk_expected_steps(env0)
    for n in ns:
        t0 = time.perf_counter()
        lengths, planned = [], 0
        for seed in range(runs):
            env = make("wm/DynaMaze-v0")
            dq = agent_for(env, seed, planning_steps=n, **hp)
            lengths.append(run_episodes(env, dq, episodes))
            planned += dq.planning_updates
        wall = time.perf_counter() - t0
        arr = np.array(lengths, np.float64)
        mean = arr.mean(0)
        out["per_n"][str(n)] = {
            "mean_steps_per_episode": mean.round(2).tolist(),
            "at_episode": {str(e): round(float(mean[e - 1]), 2) for e in (1, 2, 3, 5, 10, 20, 50)
                           if e <= episodes},
            "stderr_at_episode": {str(e): round(float(arr[:, e - 1].std(ddof=1) / np.sqrt(runs)), 2)
                                  for e in (1, 2, 3, 5, 10, 20, 50) if e <= episodes},
            # first episode from which the mean stays within 10% of its final-10-episode level
            "plateau_level": round(float(mean[-10:].mean()), 2),
            "plateau_from_episode": _plateau_episode(mean),
            "planning_updates": planned, "wall_seconds": round(wall, 3),
        }
    return out


def _plateau_episode(mean: np.ndarray, tol: float = 0.1) -> int:
    level = mean[-10:].mean()
    ok = mean <= level * (1 + tol)
    for e in range(len(mean)):
        if ok[e:].all():
            return e + 1
    return len(mean)


def changing_maze(env_id: str, steps: int, change_at: int, runs: int, hp: dict, variants: dict) -> dict:
    env0 = make(env_id)
    before = shortest_path(env0.walls0, env0.start, env0.goal)
    after = shortest_path(env0.walls1, env0.start, env0.goal)
    out = {"settings": {"env": env_id, "steps": steps, "change_at": change_at, "runs": runs, **hp,
                        "variants": variants, "seeds": list(range(runs))},
           "shortest_path_before": before, "shortest_path_after": after, "per_agent": {}}
    # the cell that only exists after the change: (3, 8) opens in the shortcut maze, (3, 0) in blocking
    opened = [tuple(map(int, x)) for x in np.argwhere(env0.walls0 & ~env0.walls1)]
    watch = opened[0] if opened else None
    out["opened_cell"] = list(watch) if watch else None
    for name, extra in variants.items():
        t0 = time.perf_counter()
        curves, firsts, final_paths, planned = [], [], [], 0
        for seed in range(runs):
            env = make(env_id)
            dq = agent_for(env, seed, **hp, **extra)
            cum, first = run_steps(env, dq, steps, watch=watch, watch_after=change_at)
            curves.append(cum)
            firsts.append(first)
            probe = make(env_id)
            probe.load_state_dict(env.state_dict())  # same walls as at the end of the run
            path = greedy_path(probe, dq)
            final_paths.append(len(path) - 1 if path[-1] == probe.goal else None)
            planned += dq.planning_updates
        wall = time.perf_counter() - t0
        arr = np.stack(curves)
        mean = arr.mean(0)
        found = [f is not None for f in firsts]
        out["per_agent"][name] = {
            "cumulative_reward_mean": mean[99::100].round(3).tolist(),  # every 100 steps
            "cumulative_reward_at": {str(s): round(float(mean[s - 1]), 2)
                                     for s in (change_at, steps) if s <= steps},
            "reward_after_change_mean": round(float(mean[-1] - mean[change_at - 1]), 2),
            "runs_that_entered_opened_cell_after_change": int(sum(found)),
            "first_entry_step_median": (float(np.median([f for f in firsts if f])) if any(found) else None),
            "final_greedy_path_lengths": final_paths,
            "runs_final_greedy_path_optimal": int(sum(p == after for p in final_paths)),
            "planning_updates": planned, "wall_seconds": round(wall, 3),
        }
        out["per_agent"][name]["_curve"] = mean  # for the plot, dropped before writing
    return out


def speed(seconds: float = 1.0) -> dict:
    """Planning updates per second after 2000 real steps on the Dyna maze (model table filled)."""
    out = {}
    for name, kw in {"dyna_q": {}, "dyna_q_plus": {"kappa": 1e-3}, "prioritized_sweeping": {"prioritized": True,
                                                                                              "theta": 0.0}}.items():
        env = make("wm/DynaMaze-v0")
        dq = agent_for(env, 0, alpha=0.1, epsilon=0.1, gamma=0.95, planning_steps=5, **kw)
        run_steps(env, dq, 2000)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if dq.prioritized:
                for key in dq.model.keys[:200]:  # refill the queue with every observed pair
                    dq._push(key, 1.0 + dq.rng.random())
                done += dq.sweep(10_000)
            else:
                done += dq.plan(10_000)
        wall = time.perf_counter() - t0
        out[name] = {"updates": done, "seconds": round(wall, 3), "updates_per_second": round(done / wall)}
    return out


# ---- plots ----------------------------------------------------------------------------------------
def plot_8_2(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, d in res["per_n"].items():
        y = d["mean_steps_per_episode"]
        ax.plot(range(2, len(y) + 1), y[1:], label=f"{n} planning steps" if n != "0" else "0 planning steps (direct RL only)")
    ax.set_xlabel("Episodes")
    ax.set_ylabel("Steps per episode")
    ax.set_ylim(0, 800)
    ax.set_title(f"Dyna maze (Fig. 8.2), mean of {res['settings']['runs']} runs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_changing(res: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, d in res["per_agent"].items():
        ax.plot(np.arange(1, len(d["_curve"]) + 1), d["_curve"], label=name)
    ax.axvline(res["settings"]["change_at"], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("Time steps")
    ax.set_ylabel("Cumulative reward")
    ax.set_title(f"{title}, mean of {res['settings']['runs']} runs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- bookkeeping ----------------------------------------------------------------------------------
def log_wandb(paths: dict[str, Path], summary: dict) -> None:
    import wandb
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    run_dir = ROOT / "outputs" / "bench-wandb"  # git-ignored
    run_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="wm", name="bench-dyna", job_type="bench", mode=mode, dir=str(run_dir),
                     config=summary)
    try:
        run.log({key: wandb.Image(str(p)) for key, p in paths.items()})
    finally:
        wandb.finish()


# ---- learned-model Dyna on CartPole, through train.py -------------------------------------------
CARTPOLE_VARIANTS = {"dqn": "dqn_cartpole", "dyna_dqn": "dyna_cartpole"}


def main_cartpole(args: argparse.Namespace, argv: list[str]) -> dict:
    """DQN vs Dyna-DQN, the same seeds and env-step budget, full curves. The DQN runs are the ones
    ``bench.dqn`` makes (same run dirs, reused when complete): the two benchmarks share one DQN."""
    per_variant = {}
    for name, experiment in CARTPOLE_VARIANTS.items():
        overrides = [f"experiment={experiment}", f"total_steps={args.budget}", *args.override]
        runs = [train_seed(experiment, overrides, s, args.threshold, reuse=args.reuse) for s in args.seeds]
        hits = [r["steps_to_threshold"] for r in runs]
        per_variant[name] = {"overrides": overrides, "seeds": runs, "summary": {
            "seeds_reaching_threshold": sum(h is not None for h in hits), "n_seeds": len(runs),
            # a seed that never reaches the threshold counts as "more than the budget" in the median
            "steps_to_threshold_median": _median_or_none(hits),
            "steps_to_threshold": spread(hits), "final_return": spread([r["final"] for r in runs]),
            "wall_seconds": spread([r["wall_seconds"] for r in runs]),
            "cpu_seconds": spread([r["cpu_seconds"] for r in runs])}}
    a, b = (per_variant[k]["summary"]["steps_to_threshold_median"] for k in ("dqn", "dyna_dqn"))
    pairs = zip(*(per_variant[k]["seeds"] for k in ("dqn", "dyna_dqn")))
    result = write_results(f"{args.name}_cartpole", {
        "command": "python -m bench.dyna " + " ".join(argv),
        "budget": {"env_steps": args.budget, "eval_every": 2500, "eval_episodes": 20},
        "threshold": args.threshold, "per_variant": per_variant,
        "ratio_dqn_over_dyna_median_steps": round(a / b, 3) if a and b else None,
        "ratio_per_seed": {str(x["seed"]): round(x["steps_to_threshold"] / y["steps_to_threshold"], 3)
                           if x["steps_to_threshold"] and y["steps_to_threshold"] else None for x, y in pairs},
    })
    path = plot_curves(f"{args.name}_cartpole", {"DQN": per_variant["dqn"]["seeds"],
                                                 "Dyna-DQN": per_variant["dyna_dqn"]["seeds"]}, args.threshold)
    if args.wandb:
        log_wandb({"cartpole": path}, {"ratio": json.loads(result.read_text())["ratio_dqn_over_dyna_median_steps"]})
    return json.loads(result.read_text())


def _median_or_none(hits: list[int | None]) -> float | None:
    capped = sorted(h if h is not None else float("inf") for h in hits)
    median = float(np.median(capped)) if capped else float("inf")
    return median if np.isfinite(median) else None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30, help="runs for Figure 8.2")
    p.add_argument("--changing-runs", type=int, default=30, help="runs for Figures 8.4 / 8.5")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="dyna")
    p.add_argument("--wandb", action="store_true", help="log the PNGs to W&B")
    p.add_argument("--cartpole", action="store_true",
                   help="instead: DQN vs Dyna-DQN on CartPole through train.py (dyna_cartpole.json)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--budget", type=int, default=50000, help="env steps per CartPole run (both variants)")
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--override", nargs="*", default=[], help="extra train.py overrides for both variants")
    p.add_argument("--reuse", action="store_true", help="keep completed seed run dirs from an earlier run")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.cartpole:
        return main_cartpole(args, argv)
    t0 = time.perf_counter()
    load_before = os.getloadavg()

    fig82 = figure_8_2(args.runs, args.episodes, [0, 5, 50])
    changing_hp = {"alpha": 1.0, "epsilon": 0.1, "gamma": 0.95}
    blocking = changing_maze("wm/BlockingMaze-v0", 3000, 1000, args.changing_runs,
                             dict(changing_hp, planning_steps=10),
                             {"Dyna-Q": {}, "Dyna-Q+": {"kappa": 1e-4}})
    shortcut = changing_maze("wm/ShortcutMaze-v0", 6000, 3000, args.changing_runs,
                             dict(changing_hp, planning_steps=50),
                             {"Dyna-Q": {}, "Dyna-Q+": {"kappa": 1e-3}})
    spd = speed()

    paths = {"fig8_2": args.out / f"{args.name}_fig8_2.png", "fig8_4": args.out / f"{args.name}_fig8_4.png",
             "fig8_5": args.out / f"{args.name}_fig8_5.png"}
    plot_8_2(fig82, paths["fig8_2"])
    plot_changing(blocking, paths["fig8_4"], "Blocking maze (Fig. 8.4)")
    plot_changing(shortcut, paths["fig8_5"], "Shortcut maze (Fig. 8.5)")
    for res in (blocking, shortcut):
        for d in res["per_agent"].values():
            d.pop("_curve")

    result = {
        "benchmark": "dyna",
        "command": "flock /tmp/wm-bench.lock python -m bench.dyna " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "figure_8_2_dyna_maze": fig82,
        "figure_8_4_blocking_maze": blocking,
        "figure_8_5_shortcut_maze": shortcut,
        "planning_speed": spd,
        "plots": {k: str(v.relative_to(ROOT)) if v.is_relative_to(ROOT) else str(v) for k, v in paths.items()},
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.wandb:
        log_wandb(paths, {"figure_8_2": {n: d["at_episode"] for n, d in fig82["per_n"].items()}})
    return result


if __name__ == "__main__":
    r = main()
    if "per_variant" in r:  # --cartpole
        print(json.dumps({k: v.get("summary") for k, v in r["per_variant"].items()}),
              r["ratio_dqn_over_dyna_median_steps"], r["ratio_per_seed"])
        sys.exit(0)
    f = r["figure_8_2_dyna_maze"]["per_n"]
    print(json.dumps({n: d["at_episode"] for n, d in f.items()}))
    for key in ("figure_8_4_blocking_maze", "figure_8_5_shortcut_maze"):
        print(key, json.dumps({a: {k: v for k, v in d.items() if k not in ("cumulative_reward_mean", "final_greedy_path_lengths")}
                               for a, d in r[key]["per_agent"].items()}))
    print(json.dumps(r["planning_speed"]))
