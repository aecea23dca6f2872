"""Dreamer / PlaNet benchmarks through train.py.

    python -m bench.dreamer                       # everything below, in order
    python -m bench.dreamer --only dreamer        # Dreamer vs DQN on CartPole-v1, 10,000 env steps, 5 seeds
    python -m bench.dreamer --only planet         # PlaNet (RSSM + CEM) on CartPole-v1
    python -m bench.dreamer --only carracing      # Dreamer on CarRacing-v3 pixels at a small CPU budget
    python -m bench.dreamer --only speed          # time per update at the default size + profile
    python -m bench.dreamer --only timing         # one Dreamer seed alone: wall time of the 10k steps
    python -m bench.dreamer --only stable --parallel 2  # Dreamer 5 seeds to 10k, then the same runs on to 30k

Results: bench/results/dreamer.json (+ .png), dreamer_planet.json, dreamer_carracing.json,
dreamer_speed.json, dreamer_timing.json, dreamer_stable.json (+ .png). The whole benchmark holds /tmp/wm-bench.lock; `--parallel 2` runs two seeds at a time
(one torch thread each) so a 2-core machine is used fully; wall times are per seed either way.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    LOCK,
    ROOT,
    RUNS,
    curve,
    first_step_at,
    iqm_interval,
    plot_curves,
    read_run,
    spread,
    train_seed,
    write_results,
)
from wm import report

THRESHOLD = 475.0
LAST_K = 3  # final performance: the mean of the last LAST_K evaluations
STAY = 0.95  # stability: an evaluation after the first at the threshold counts as staying if >= STAY x threshold


REUSE = False  # --reuse: keep completed run dirs (same overrides) instead of training again


def run_seed(name: str, overrides: list[str], seed: int, metric: str = "eval/return_mean",
             threshold: float | None = THRESHOLD) -> dict[str, Any]:
    """bench.common.train_seed (the benchmark holds the bench lock itself; seeds may run in parallel) plus
    the world-model diagnostics of the run's summary."""
    rec = train_seed(name, overrides, seed, threshold, metric, reuse=REUSE, lock=False)
    summary = read_run(RUNS / name / f"seed{seed}")["summary"]
    rec.update({k: summary[k] for k in DIAGNOSTICS if k in summary})
    return rec


DIAGNOSTICS = ("model/kl", "model/obs_loss", "model/reward_loss", "model/cont_loss", "agent/imag_return")


def run_jobs(jobs: list[tuple[str, list[str], int]], parallel: int, on_done=None, **kw) -> dict[str, list[dict]]:
    """Run (name, overrides, seed) jobs `parallel` at a time, in order; on_done(results) after each one."""
    results: dict[str, list[dict]] = {name: [] for name, _, _ in jobs}
    lock = threading.Lock()

    def one(job):
        rec = run_seed(*job, **kw)
        with lock:
            results[job[0]].append(rec)
            results[job[0]].sort(key=lambda r: r["seed"])
            if on_done:
                on_done(results)

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, jobs))
    return results


def run_seeds(name: str, overrides: list[str], seeds: list[int], parallel: int, **kw) -> list[dict]:
    return run_jobs([(name, overrides, s) for s in seeds], parallel, **kw)[name]


def final_mean(points: list[list[float]], upto: float | None = None, k: int = LAST_K) -> float | None:
    """Final performance: the mean of the last k evaluations (at steps <= upto)."""
    final = report.final_of([v for s, v in points if upto is None or s <= upto], k)
    return None if final is None else round(final, 2)


def iqm(values: list[float | None]) -> float | None:
    """Interquartile mean over seeds (rliable's IQM: the mean of the middle 50%, a quarter cut each side)."""
    vals = [v for v in values if v is not None]
    return round(report.iqm(np.array(vals, float)), 2) if vals else None


def stability(points: list[list[float]], threshold: float = THRESHOLD) -> float | None:
    """Fraction of the evaluations after the first at the threshold that stay within 5% of it."""
    share = report.stability([v for _, v in points], threshold)  # within 5%: STAY
    return None if share is None else round(share, 3)


def with_final(rec: dict[str, Any], upto: float | None = None) -> dict[str, Any]:
    """A seed's record plus final performance and stability (of its curve up to `upto`)."""
    points = [p for p in rec["curve"] if upto is None or p[0] <= upto]
    return {**rec, "final_mean_last3": final_mean(points), "stability": stability(points),
            "steps_to_threshold": first_step_at(points, THRESHOLD)}


def summarise(seeds: list[dict]) -> dict[str, Any]:
    seeds = [with_final(r) for r in seeds]
    reached = [r["steps_to_threshold"] for r in seeds]
    return {
        "final_mean_last3_iqm": iqm([r["final_mean_last3"] for r in seeds]),
        "final_mean_last3_iqm_ci": iqm_interval([r["final_mean_last3"] for r in seeds]),
        "final_mean_last3": spread([r["final_mean_last3"] for r in seeds]),
        "stability": spread([r["stability"] for r in seeds]),
        "seeds_reaching_threshold": sum(r is not None for r in reached), "n_seeds": len(seeds),
        "steps_to_threshold": spread(reached), "final_return": spread([r["final"] for r in seeds]),
        "best_return": spread([r["best"] for r in seeds]),
        "wall_seconds": spread([r["wall_seconds"] for r in seeds]),
        "cpu_seconds": spread([r["cpu_seconds"] for r in seeds]),
        "env_steps_per_second": spread([r["env_steps_per_second"] for r in seeds]),
    }


def bench_dreamer(args) -> None:
    common = [f"total_steps={args.steps}", "eval.every=1000", "eval.episodes=10", "eval.envs=10"]
    dreamer_ov = ["experiment=dreamer_cartpole", *common]
    dqn_ov = ["experiment=dqn_cartpole", *common]
    jobs = [("dreamer_cartpole", dreamer_ov, s) for s in args.seeds]
    if not args.no_dqn:
        jobs += [("dqn_cartpole_10k", dqn_ov, s) for s in args.seeds]

    def write(results, complete=False):
        dreamer, dqn = results["dreamer_cartpole"], results.get("dqn_cartpole_10k", [])
        write_results("dreamer", {
            "command": f"python -m bench.dreamer --only dreamer --parallel {args.parallel}",
            "complete": complete,
            "budget": {"env_steps": args.steps, "eval_every": 1000, "eval_episodes": 10,
                       "max_wall_seconds_per_seed_target": 1200},
            "threshold": THRESHOLD, "parallel_seeds": args.parallel,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "dreamer": {"overrides": dreamer_ov, "seeds": dreamer, "summary": summarise(dreamer) if dreamer else None},
            "dqn": {"overrides": dqn_ov, "seeds": dqn, "summary": summarise(dqn) if dqn else None},
        })
        plot_curves("dreamer", {"Dreamer (rssm + actor_critic)": dreamer, **({"DQN": dqn} if dqn else {})},
                    THRESHOLD)

    results = run_jobs(jobs, args.parallel, on_done=write)
    write(results, complete=True)


def bench_timing(args) -> None:
    """One Dreamer seed with the benchmark's overrides, alone (no parallel seeds): the wall time of 10k
    steps that the 20-minute target is about, with CPU seconds and the load beside it."""
    ov = ["experiment=dreamer_cartpole", f"total_steps={args.steps}", "eval.every=1000", "eval.episodes=10",
          "eval.envs=10"]
    load = [round(x, 2) for x in os.getloadavg()]
    seeds = run_seeds("dreamer_cartpole_timing", ov, args.seeds[:1], 1)
    write_results("dreamer_timing", {
        "command": f"python -m bench.dreamer --only timing --seeds {args.seeds[0]}", "overrides": ov,
        "budget": {"env_steps": args.steps, "max_wall_seconds_per_seed_target": 1200},
        "loadavg_at_start": load, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "seeds": seeds, "summary": summarise(seeds)})


def bench_planet(args) -> None:
    ov = ["experiment=planet_cartpole", f"total_steps={args.planet_steps}"]
    seeds = run_seeds("planet_cartpole", ov, args.planet_seeds, args.parallel)
    write_results("dreamer_planet", {
        "command": f"python -m bench.dreamer --only planet --planet-seeds {' '.join(map(str, args.planet_seeds))} "
                   f"--planet-steps {args.planet_steps}", "overrides": ov,
        "budget": {"env_steps": args.planet_steps}, "threshold": THRESHOLD, "seeds": seeds,
        "summary": summarise(seeds)})
    plot_curves("dreamer_planet", {"PlaNet (rssm gaussian + cem)": seeds}, THRESHOLD)


def bench_carracing(args) -> None:
    ov = ["experiment=dreamer_carracing", f"total_steps={args.carracing_steps}",
          f"eval.every={args.carracing_steps}", "eval.episodes=1", "eval.envs=1"]
    seeds = run_seeds("dreamer_carracing", ov, [0], 1, threshold=None)
    write_results("dreamer_carracing", {
        "command": f"python -m bench.dreamer --only carracing --carracing-steps {args.carracing_steps}",
        "overrides": ov, "complete": True,
        "budget": {"env_steps": args.carracing_steps}, "seeds": seeds, "summary": summarise(seeds)})


def carracing_partial(args) -> None:
    """Write bench/results/dreamer_carracing.json from the run dir of a CarRacing run that was stopped before
    its budget: steps done, wall time, the training episodes' returns and the world-model losses logged."""
    path = RUNS / "dreamer_carracing" / "seed0" / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    log = RUNS / "dreamer_carracing" / "seed0.log"
    keys = ("model/loss", "model/obs_loss", "model/reward_loss", "model/kl", "agent/imag_return")
    write_results("dreamer_carracing", {
        "command": f"python -m bench.dreamer --only carracing --carracing-steps {args.carracing_steps} "
                   "(stopped early; this file: python -m bench.dreamer --carracing-partial)",
        "complete": False, "budget": {"env_steps": args.carracing_steps},
        "steps_logged": max(r["step"] for r in rows), "wall_seconds_at_last_log": max(r["time"] for r in rows),
        "last_progress_line": next((x for x in reversed(log.read_text().splitlines()) if "env steps" in x), None),
        "train_episodes": [[r["step"], r["train/episode_return"]] for r in rows if "train/episode_return" in r],
        "learner_metrics": [{"step": r["step"], **{k: r[k] for k in keys if k in r}} for r in rows
                            if any(k in r for k in keys)],
        "eval": curve(rows, "eval/return_mean"),
    })


SPEED_VARIANTS = {  # name -> (torch threads, overrides on experiment=dreamer_cartpole)
    "default": (1, []),
    "two-hot reward + critic heads (255 bins, DreamerV3 paper)": (
        1, ["model.reward_head=twohot", "agent.critic_head=twohot"]),
    "default with Adam's per-tensor loop (fused=false)": (1, ["+bench_unfused=true"]),
}


def bench_speed(args) -> None:
    """Time per training update (world model + actor-critic) at the default size: wall and CPU ms per update
    (CPU time is what a loaded machine does not inflate), a cProfile of where it goes, and the variants that
    show what the defaults saved."""
    code = r"""
import json, sys, time, torch, cProfile, pstats, io
import numpy as np
from hydra import compose, initialize_config_dir
from wm.config import typed
from wm.data.replay import Replay
from wm.envs.factory import EnvConfig, make_env
from wm.models import rssm as R
from wm.agents.actor_critic import ActorCritic
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
overrides = json.loads(sys.argv[3])
if "+bench_unfused=true" in overrides:
    overrides.remove("+bench_unfused=true")
    R.adam = lambda params, lr, eps, device: torch.optim.Adam(params, lr=lr, eps=eps)
    import wm.agents.actor_critic as AC; AC.adam = R.adam
with initialize_config_dir(config_dir=sys.argv[2], version_base="1.3"):
    cfg = compose("train", overrides=["experiment=dreamer_cartpole", *overrides])
env = make_env(typed(EnvConfig, cfg.env, "env"))
rep = Replay(10000, 1, env.observation_space, env.action_space)
def row(obs, a, r, first, last, term):
    rep.add([0], obs=obs[None], action=np.array([a]), reward=np.array([r], np.float32),
            is_first=np.array([first]), is_last=np.array([last]), is_terminal=np.array([term]))
obs, _ = env.reset(seed=0); env.action_space.seed(0); row(obs, 0, 0.0, True, False, False)
for t in range(2000):  # random-policy CartPole rows, episode boundaries included
    a = env.action_space.sample(); obs, r, te, tr, _ = env.step(a); row(obs, a, r, False, te or tr, te)
    if te or tr:
        obs, _ = env.reset(seed=t + 1); row(obs, 0, 0.0, True, False, False)
m = R.RSSM(typed(R.RSSM, cfg.model, "model"), env.observation_space, env.action_space)
ag = ActorCritic(typed(ActorCritic, cfg.agent, "agent"), env.observation_space, env.action_space, m)
for i in range(5): m.train_step(rep, i); ag.train_step(rep, i)
n = 20; tm = ta = cm = ca = 0.0
for i in range(n):
    t0, c0 = time.perf_counter(), time.process_time(); m.train_step(rep, i)
    t1, c1 = time.perf_counter(), time.process_time(); ag.train_step(rep, i)
    tm += t1 - t0; ta += time.perf_counter() - t1; cm += c1 - c0; ca += time.process_time() - c1
pr = cProfile.Profile(time.process_time); pr.enable()
for i in range(5): m.train_step(rep, i); ag.train_step(rep, i)
pr.disable(); s = io.StringIO(); st = pstats.Stats(pr, stream=s); st.sort_stats("tottime").print_stats(10)
total = st.total_tt
top = []
for (f, line, fn), (cc, nc, tt, ct, callers) in sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:10]:
    top.append({"function": fn if f == "~" else f"{f.split('/')[-1]}:{line}({fn})", "calls_per_update": nc / 5,
                "cpu_ms_per_update": round(1000 * tt / 5, 2), "share": round(tt / total, 3)})
print(json.dumps({"threads": int(sys.argv[1]), "overrides": overrides, "updates_timed": n,
                  "wall_ms_per_update": {"model": 1000 * tm / n, "agent": 1000 * ta / n, "total": 1000 * (tm + ta) / n},
                  "cpu_ms_per_update": {"model": 1000 * cm / n, "agent": 1000 * ca / n, "total": 1000 * (cm + ca) / n},
                  "params_model": sum(p.numel() for p in m.parameters()),
                  "params_agent": sum(p.numel() for p in ag.parameters()),
                  "profile_top_cpu_tottime": top}))
"""
    out = {}
    for name, (threads, overrides) in SPEED_VARIANTS.items():
        load = os.getloadavg()
        p = subprocess.run([sys.executable, "-c", code, str(threads), str(ROOT / "conf"), json.dumps(overrides)],
                           cwd=ROOT, check=False, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)})
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        rec = json.loads(p.stdout.strip().splitlines()[-1])
        rec["loadavg_at_start"] = [round(x, 2) for x in load]
        out[name] = rec
        print(name, rec["wall_ms_per_update"], rec["cpu_ms_per_update"], flush=True)
    write_results("dreamer_speed", {
        "command": "python -m bench.dreamer --only speed",
        "config": "experiment=dreamer_cartpole (model=rssm, agent=actor_critic defaults), 2,000 random CartPole rows",
        "note": "wall time is inflated by other load on the shared machine; CPU time (process_time) is not",
        "variants": out})


def _cpu_of(run_dir) -> float | None:
    """user+sys CPU seconds of the live train.py process writing run_dir (None if it is not running)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"hydra.run.dir={run_dir}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)
        except OSError:
            continue
    return None


def snapshot(args) -> None:
    """Write bench/results/dreamer.json from the run dirs of a Dreamer/DQN benchmark that is still running
    (or was stopped): per seed, the eval curve so far, marked incomplete. No training, no lock."""

    groups = {}
    for name in ("dreamer_cartpole", "dqn_cartpole_10k"):
        recs = []
        for seed in args.seeds:
            path = RUNS / name / f"seed{seed}" / "metrics.jsonl"
            if not path.exists():
                continue
            rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            points = curve(rows, "eval/return_mean")
            last = rows[-1] if rows else {"step": 0, "time": 0}
            recs.append({
                "seed": seed, "complete": False, "steps_done": last["step"],
                "cpu_seconds_so_far": _cpu_of(RUNS / name / f"seed{seed}"),
                "wall_seconds_so_far": last.get("time"),
                "env_steps_per_second_so_far": round(last["step"] / last["time"], 2) if last.get("time") else None,
                "final": points[-1][1] if points else None, "best": max((v for _, v in points), default=None),
                "steps_to_threshold": first_step_at(points, THRESHOLD), "curve": points,
            })
        groups[name] = recs
    write_results("dreamer", {
        "command": "python -m bench.dreamer --only dreamer --parallel 5 (snapshot: python -m bench.dreamer --snapshot)",
        "complete": False,
        "note": "snapshot of runs still in progress when the results were committed; steps_done per seed",
        "budget": {"env_steps": args.steps, "eval_every": 1000, "eval_episodes": 10,
                   "max_wall_seconds_per_seed_target": 1200},
        "threshold": THRESHOLD, "parallel_seeds": 5, "omp_num_threads": "1",
        "dreamer": {"seeds": groups["dreamer_cartpole"],
                    "seeds_reaching_threshold_so_far": sum(r["steps_to_threshold"] is not None
                                                           for r in groups["dreamer_cartpole"])},
        "dqn": {"seeds": groups["dqn_cartpole_10k"]},
    })
    plot_curves("dreamer", {"Dreamer (rssm + actor_critic), in progress": groups["dreamer_cartpole"],
                            **({"DQN": groups["dqn_cartpole_10k"]} if groups["dqn_cartpole_10k"] else {})}, THRESHOLD)


def bench_stable(args) -> None:
    """Once solved, stays solved (issue 24): Dreamer seeds to `--steps` (10k), then the same runs resumed on
    to `--long-steps` (30k). Reported: final performance at 10k (mean of the last 3 evals, IQM over seeds),
    steps to 475, and after 10k the lowest evaluation and the fraction of evaluations that stay >= 95% of
    475. Resumable: rerun the same command and completed phases are kept, a stopped phase resumes from its
    last checkpoint (every 2,500 steps); CPU seconds are summed over the phases a seed ran."""
    name = "dreamer_cartpole_stable"
    ov = ["experiment=dreamer_cartpole", "eval.every=1000", "eval.episodes=10", "eval.envs=10"]

    def run_dir(seed: int) -> Path:
        return RUNS / name / f"seed{seed}"

    def phase(seed: int, target: int) -> None:
        """Train (or resume) one seed's run up to `target` env steps, unless it got there already."""
        rd = run_dir(seed)
        if (rd / "summary.json").exists():
            summary = read_run(rd)["summary"]
            if summary["status"] == "completed" and summary["steps"] >= target:
                return
        cpu_file = rd.parent / f"seed{seed}.cpu.json"
        resume = ["resume=true"] if (rd / "checkpoints").exists() else []
        rec = train_seed(name, [*ov, f"total_steps={target}", *resume], seed, THRESHOLD, lock=False)
        with lock:
            cpu = json.loads(cpu_file.read_text()) if cpu_file.exists() else {}
            cpu[str(target)] = round(cpu.get(str(target), 0) + rec["cpu_seconds"], 2)
            cpu_file.write_text(json.dumps(cpu) + "\n")

    def record(seed: int) -> dict[str, Any] | None:
        rd = run_dir(seed)
        if not (rd / "metrics.jsonl").exists():
            return None
        points = curve(read_run(rd)["rows"])
        cpu_file = rd.parent / f"seed{seed}.cpu.json"
        cpu = json.loads(cpu_file.read_text()) if cpu_file.exists() else {}
        after = [v for s, v in points if s > args.steps]
        short = with_final({"curve": points}, upto=args.steps)
        return {"seed": seed, "steps_done": points[-1][0] if points else 0, "curve": points,
                "cpu_seconds": round(sum(cpu.values()), 1), "cpu_seconds_by_phase": cpu,
                "at_short": {k: v for k, v in short.items() if k != "curve"},
                "final_mean_last3_long": final_mean(points) if after else None,
                "min_eval_after_short": min(after, default=None),
                "evals_after_short_ge_450": sum(v >= 450 for v in after), "evals_after_short": len(after),
                "stability_long": stability(points)}

    def write(recs: list[dict], complete: bool = False) -> None:
        recs = sorted(recs, key=lambda r: r["seed"])
        short = [r["at_short"] for r in recs]
        write_results("dreamer_stable", {
            "command": f"python -m bench.dreamer --only stable --parallel {args.parallel} --steps {args.steps} "
                       f"--long-steps {args.long_steps} --seeds {' '.join(map(str, args.seeds))}",
            "complete": complete, "overrides": ov, "threshold": THRESHOLD, "stay_fraction": STAY,
            "budget": {"env_steps": args.steps, "long_env_steps": args.long_steps, "eval_every": 1000,
                       "eval_episodes": 10},
            "summary": {
                "final_mean_last3_iqm_at_short": iqm([r["final_mean_last3"] for r in short]),
                "final_mean_last3_iqm_ci_at_short": iqm_interval([r["final_mean_last3"] for r in short]),
                "seeds_reaching_threshold_by_short": sum(r["steps_to_threshold"] is not None for r in short),
                "steps_to_threshold": [r["steps_to_threshold"] for r in short],
                "final_mean_last3_iqm_at_long": iqm([r["final_mean_last3_long"] for r in recs]),
                "final_mean_last3_iqm_ci_at_long": iqm_interval([r["final_mean_last3_long"] for r in recs]),
                "min_eval_after_short": min((r["min_eval_after_short"] for r in recs
                                             if r["min_eval_after_short"] is not None), default=None),
                "stability_long": spread([r["stability_long"] for r in recs]),
                "cpu_seconds": spread([r["cpu_seconds"] for r in recs]), "n_seeds": len(recs)},
            "seeds": recs})
        plot_curves("dreamer_stable", {"Dreamer (experiment=dreamer_cartpole)": recs}, THRESHOLD)

    lock = threading.Lock()
    if args.write_only:  # results from the run dirs as they are (a study stopped part way), no training
        write([r for r in map(record, args.seeds) if r is not None])
        return

    def job(seed_target: tuple[int, int]) -> None:
        phase(*seed_target)
        with lock:
            write([r for r in map(record, args.seeds) if r is not None])

    # every seed to the short budget first (the 10k figures come early), then each on to the long one
    for target in (args.steps, args.long_steps):
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(job, [(seed, target) for seed in args.seeds]))
    write([record(seed) for seed in args.seeds], complete=True)


SECTIONS = {"dreamer": bench_dreamer, "stable": bench_stable, "planet": bench_planet, "carracing": bench_carracing, "speed": bench_speed,
            "timing": bench_timing}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=[s for s in SECTIONS if s != "stable"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--long-steps", type=int, default=30_000, help="stable: the same runs resumed on to this")
    p.add_argument("--no-dqn", action="store_true")
    p.add_argument("--planet-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--planet-steps", type=int, default=3000)
    p.add_argument("--carracing-steps", type=int, default=4000)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--snapshot", action="store_true", help="write results from run dirs in progress and exit")
    p.add_argument("--write-only", action="store_true",
                   help="stable: write dreamer_stable.json from its run dirs as they are and exit (no training)")
    p.add_argument("--reuse", action="store_true", help="keep completed seed run dirs of the same command")
    p.add_argument("--carracing-partial", action="store_true",
                   help="write dreamer_carracing.json from a CarRacing run dir that was stopped early and exit")
    args = p.parse_args()
    global REUSE
    REUSE = args.reuse
    if args.snapshot:
        snapshot(args)
        return
    if args.carracing_partial:
        carracing_partial(args)
        return
    if args.write_only:
        bench_stable(args)
        return
    if args.parallel > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # one torch thread per concurrent seed
    with open(LOCK, "w") as lock:
        if os.environ.get("WM_BENCH_LOCK", "1") != "0":  # 0: development runs beside other benchmarks
            fcntl.flock(lock, fcntl.LOCK_EX)
        for name in args.only:
            print(f"== {name}", flush=True)
            SECTIONS[name](args)


if __name__ == "__main__":
    main()
