"""MBPO vs model-free SAC on InvertedPendulum-v5 (steps to eval return >= 950 within 5,000 env steps), a CPU
MBPO run on Hopper-v5 at a stated budget, and the model's held-out one-step error and rollout speed per env.

    python -m bench.mbpo                                  (or: make bench BENCH=mbpo)
    python -m bench.mbpo --seeds 0 1 2 --hopper-steps 6000   (what fits a deadline; the file says what ran)

All runs go through train.py (experiment=mbpo_inverted_pendulum / sac_inverted_pendulum / mbpo_hopper_cpu).
The model figures are read from each MBPO run's metrics.jsonl: model/holdout_mse_elites (mean squared error
of the elites' predicted mean on the held-out 20% of real transitions, in standardised target units: 1.0 is
as bad as predicting the mean) and model/holdout_mse_raw (the same in the env's own units) from the last
metrics row that has them (the mean over the retrains since the previous row: one retrain per row on
InvertedPendulum, whose evals every 250 steps flush the metrics, four on Hopper), and the median over rows of
model/rollout_transitions_per_s; and ``heldout_model_error``: each final ensemble on fresh transitions of its
run's final policy. InvertedPendulum seeds end at their first eval >= 950 (eval.stop_at) unless --full.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from bench import common
from bench.common import RUNS, plot_curves, read_run, spread, train_seed, write_results

THRESHOLD = 950.0


def model_figures(name: str, seed: int) -> dict:
    rows = read_run(RUNS / name / f"seed{seed}")["rows"]
    last = [r for r in rows if "model/holdout_mse_elites" in r]
    tps = [r["model/rollout_transitions_per_s"] for r in rows if "model/rollout_transitions_per_s" in r]
    return {
        "holdout_mse_elites_normalised": last[-1]["model/holdout_mse_elites"] if last else None,
        "holdout_mse_raw": last[-1]["model/holdout_mse_raw"] if last else None,
        "real_transitions_at_last_retrain": last[-1]["model/real_size"] if last else None,
        "rollout_transitions_per_s_median": statistics.median(tps) if tps else None,
        "log_rows": len(last),  # metric rows with model figures (each the mean over the retrains it covers)
    }


def heldout_model_error(name: str, seed: int, env_id: str, n: int = 2000) -> dict:
    """One-step error of a finished run's ensemble on ``n`` fresh transitions it never trained on: the run's
    final SAC policy (exploring) acting in the real env from resets seeded apart from training and evaluation.
    Each elite predicts the mean next state and reward; errors are averaged over elites. ``obs_nmse``: the
    squared error of the state change divided by its variance, per observation dimension (0 is perfect, 1 is
    as bad as predicting the average change). Also times ``MBPO.rollout`` (policy + ensemble + termination)
    at the run's rollout batch size."""
    import time

    import gymnasium as gym
    import numpy as np
    import torch
    from omegaconf import OmegaConf

    from wm import checkpoint
    from wm.config import build

    torch.set_num_threads(1)
    run_dir = RUNS / name / f"seed{seed}"
    cfg = OmegaConf.load(run_dir / "config.yaml")
    env = gym.make(env_id)
    spaces = {"obs_space": env.observation_space, "act_space": env.action_space}
    model = build(cfg.model, "model", **spaces)
    agent = build(cfg.agent, "agent", model=model, **spaces)
    state = checkpoint.load(run_dir)
    model.load_state_dict(state["model"])
    torch.nn.Module.load_state_dict(agent, state["agent"]["nets"])  # the nets; the optimizer is not needed
    rows, episode = [], 0
    obs, _ = env.reset(seed=10**6 + 1000 * seed)
    while len(rows) < n:
        action = agent.policy_actions(torch.as_tensor(obs[None], dtype=torch.float32))[0].numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward, next_obs))
        obs = next_obs
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=10**6 + 1000 * seed + episode)
    o, a, r, o2 = (torch.as_tensor(np.array(x), dtype=torch.float32) for x in zip(*rows))
    obs_err, rew_err = [], []
    for e in model.elites:
        pred_obs, pred_rew = model.predict(o, a, member=torch.full((n,), e), deterministic=True)
        obs_err.append(((pred_obs - o2) ** 2).mean(0))
        rew_err.append(((pred_rew - r) ** 2).mean())
    obs_mse, rew_mse = torch.stack(obs_err).mean(0), torch.stack(rew_err).mean()
    delta_var = (o2 - o).var(0).clamp_min(1e-12)
    starts = o[torch.randint(n, (cfg.model.rollout_batch_size,))]
    t0 = time.perf_counter()
    stats = model.rollout(starts, state["step"])
    seconds = time.perf_counter() - t0
    return {"transitions": n, "episodes": episode, "elites": list(model.elites),
            "obs_mse_raw_per_dim": obs_mse.tolist(), "obs_nmse_per_dim": (obs_mse / delta_var).tolist(),
            "obs_nmse_mean": (obs_mse / delta_var).mean().item(), "reward_mse_raw": rew_mse.item(),
            "reward_var": r.var().item(),
            "rollout": {"length": stats["model/rollout_length"], "transitions": stats["model/rollout_transitions"],
                        "seconds": round(seconds, 3),
                        "transitions_per_s": round(stats["model/rollout_transitions"] / seconds)}}


def summarise(seeds: list[dict]) -> dict:
    reached = [r["steps_to_threshold"] for r in seeds]
    return {"seeds_reaching_threshold": sum(r is not None for r in reached), "n_seeds": len(seeds),
            "steps_to_threshold": spread(reached), "final_return": spread([r["final"] for r in seeds]),
            "best_return": spread([r["best"] for r in seeds]),
            "wall_seconds": spread([r["wall_seconds"] for r in seeds]),
            "cpu_seconds": spread([r["cpu_seconds"] for r in seeds]),
            "loadavg_1min_at_start": spread([r["loadavg_1min_at_start"] for r in seeds]),
            "env_steps_per_second": spread([r["env_steps_per_second"] for r in seeds])}


def steps_ratio(mbpo_runs: list[dict], sac_runs: list[dict], budget: int) -> dict:
    """SAC's over MBPO's median steps to the threshold. A seed that never reaches it counts as needing more
    than the budget (censored), so the ratio is then a lower bound: ``at_least`` instead of ``value``."""
    def med(runs):  # the median with censored seeds at +inf (None if the median itself is censored)
        xs = sorted(r["steps_to_threshold"] if r["steps_to_threshold"] is not None else float("inf") for r in runs)
        mid = xs[(len(xs) - 1) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
        return None if mid == float("inf") else mid
    m, s = med(mbpo_runs), med(sac_runs)
    out = {"mbpo_median_steps": m, "sac_median_steps": s,
           "mbpo_steps_each": [r["steps_to_threshold"] for r in mbpo_runs],
           "sac_steps_each": [r["steps_to_threshold"] for r in sac_runs], "value": None, "at_least": None}
    if m is not None and s is not None:
        out["value"] = s / m
    elif m is not None:
        out["at_least"] = budget / m  # SAC's median is beyond the budget
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--sac-seeds", type=int, nargs="+", default=None, help="default: the same as --seeds")
    p.add_argument("--steps", type=int, default=5000, help="InvertedPendulum env-step budget")
    p.add_argument("--hopper-steps", type=int, default=10_000, help="0 skips Hopper")
    p.add_argument("--hopper-seed", type=int, default=0)
    p.add_argument("--full", action="store_true",
                   help="run InvertedPendulum seeds to --steps even after they reach the threshold (default: "
                        "a run ends at its first eval >= 950, eval.stop_at, which is all steps-to-threshold needs)")
    p.add_argument("--reuse", action="store_true",
                   help="take completed run dirs of the same command instead of running them again")
    p.add_argument("--collect-only", action="store_true",
                   help="run nothing: write the results from the completed run dirs there are (implies --reuse)")
    p.add_argument("--no-lock", action="store_true",
                   help="do not wait for /tmp/wm-bench.lock (other timed runs may overlap; recorded)")
    args = p.parse_args()
    if args.no_lock:
        common.LOCK = Path(f"/tmp/wm-bench-mbpo-{os.getpid()}.lock")  # a private lock
    sac_seeds = args.seeds if args.sac_seeds is None else args.sac_seeds
    args.reuse = args.reuse or args.collect_only

    def completed(name: str, seed: int) -> bool:
        path = RUNS / name / f"seed{seed}" / "summary.json"
        return path.exists() and read_run(path.parent)["summary"]["status"] == "completed"

    def wanted(name: str, seed: int) -> bool:
        return not args.collect_only or completed(name, seed)

    ip = ["experiment=mbpo_inverted_pendulum", f"total_steps={args.steps}"]
    sac = ["experiment=sac_inverted_pendulum", f"total_steps={args.steps}"]
    if not args.full:
        ip, sac = ip + [f"eval.stop_at={THRESHOLD}"], sac + [f"eval.stop_at={THRESHOLD}"]
    # Hopper: the CPU-sized preset (conf/experiment/mbpo_hopper_cpu.yaml: the paper's model and schedule with fewer
    # random steps, SAC updates and rollouts, k = 1 -> 4 over the budget)
    hop = ["experiment=mbpo_hopper_cpu", f"total_steps={max(args.hopper_steps, 1001)}"]

    mbpo_runs, sac_runs = [], []
    for s in [s for s in args.seeds if wanted("mbpo_inverted_pendulum", s)]:
        rec = train_seed("mbpo_inverted_pendulum", ip, s, THRESHOLD, reuse=args.reuse)
        rec["model"] = model_figures("mbpo_inverted_pendulum", s)
        rec["model_heldout"] = heldout_model_error("mbpo_inverted_pendulum", s, "InvertedPendulum-v5")
        mbpo_runs.append(rec)
        print("mbpo ip seed", s, rec["steps_to_threshold"], rec["final"], rec["wall_seconds"], flush=True)
    for s in [s for s in sac_seeds if wanted("sac_inverted_pendulum", s)]:
        sac_runs.append(train_seed("sac_inverted_pendulum", sac, s, THRESHOLD, reuse=args.reuse))
        print("sac ip seed", s, sac_runs[-1]["steps_to_threshold"], sac_runs[-1]["final"], flush=True)
    hopper = None
    if args.hopper_steps and wanted("mbpo_hopper", args.hopper_seed):
        hopper = train_seed("mbpo_hopper", hop, args.hopper_seed, None, reuse=args.reuse)
        hopper["model"] = model_figures("mbpo_hopper", args.hopper_seed)
        hopper["model_heldout"] = heldout_model_error("mbpo_hopper", args.hopper_seed, "Hopper-v5")
        print("mbpo hopper", hopper["final"], hopper["wall_seconds"], flush=True)

    m, b = summarise(mbpo_runs), summarise(sac_runs)
    ratio = steps_ratio(mbpo_runs, sac_runs, args.steps)
    cmd = "python -m bench.mbpo " + " ".join(
        [f"--seeds {' '.join(map(str, args.seeds))}", f"--sac-seeds {' '.join(map(str, sac_seeds))}",
         f"--steps {args.steps}", f"--hopper-steps {args.hopper_steps}", f"--hopper-seed {args.hopper_seed}"] + (["--no-lock"] if args.no_lock else [])
        + (["--full"] if args.full else []))
    write_results("mbpo", {
        "command": cmd,
        "note": ("Timed on a shared 2-core machine under heavy load from other jobs (see loadavg per seed); "
                 "wall times are several times what an idle machine gives."
                 + (" Run with --no-lock: other benchmarks ran at the same time." if args.no_lock else "")),
        "bench_lock_held": not args.no_lock,
        "inverted_pendulum": {
            "budget": {"env_steps": args.steps, "eval_every": 250, "eval_episodes": 5,
                       "stop_at_threshold": not args.full},
            "threshold": THRESHOLD,
            "mbpo": {"overrides": ip, "seeds": mbpo_runs, "summary": m},
            "sac": {"overrides": sac, "seeds": sac_runs, "summary": b},
            "sac_over_mbpo_steps_to_threshold": ratio,
        },
        "hopper": None if hopper is None else {
            "budget": {"env_steps": args.hopper_steps, "eval_every": 1000, "eval_episodes": 5},
            "overrides": hop, "run": hopper,
            "reference": "MBPO paper: about 3,000 return at 100k-125k env steps (GPU, paper settings)"},
        "model_quality": {
            "InvertedPendulum-v5": [{**r["model"], "heldout": r["model_heldout"]} for r in mbpo_runs],
            "Hopper-v5": None if hopper is None else [{**hopper["model"], "heldout": hopper["model_heldout"]}],
        },
    })
    plot_curves("mbpo", {"MBPO (InvertedPendulum-v5)": mbpo_runs, "SAC (InvertedPendulum-v5)": sac_runs},
                THRESHOLD)
    if hopper is not None:
        plot_curves("mbpo_hopper", {"MBPO (Hopper-v5, CPU)": [hopper]})


if __name__ == "__main__":
    main()
