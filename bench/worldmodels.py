"""World Models on CarRacing-v3 on this CPU: throughput side by side, and the whole pipeline at a reduced scale.

    python -m bench.worldmodels throughput     # -> bench/results/worldmodels_throughput.json
    python -m bench.worldmodels run            # -> bench/results/worldmodels_carracing.json + .png
    python -m bench.worldmodels                # both
    python -m bench.worldmodels run --reuse    # keep completed run dirs, rerun what is missing
    python -m bench.worldmodels full           # full tracks (~2.5 h): -> bench/results/worldmodels_carracing_full.json
    python -m bench.worldmodels full_dream     # C trained in M's dream on full's V and M: -> ..._full_dream.json

throughput (one process, one torch thread, paper-sized V and M, untrained weights: speed does not depend on
them): env steps/s of (a) the raw env stepped alone with random actions, (b) a population of P controllers
evaluated as one batch (P envs in a vector env + one batched V / controller / M call per step), (c) the same P
controllers evaluated one at a time, and dream steps/s of the batched population inside M.

run: ``train.py experiment=worldmodels_carracing`` (real-env CMA-ES), then the dream preset taking that run's
rollouts, V and M by path (``model.stages.*_from``), so the dream controller costs only its re-evaluations.
Extra ``key=value`` arguments go to both train.py commands. The runs ignore /tmp/wm-bench.lock (WM_BENCH_LOCK=0
is assumed); the machine's load is recorded instead.

full: ``train.py experiment=worldmodels_carracing_full`` (trained on EnvPool's CarRacing), started or resumed
where it stopped (a run that spans sessions: each call adds a segment with its wall and CPU seconds), then the best
controller on 100 fresh tracks of gymnasium's CarRacing-v3, in waves of 10 that are kept as they finish (so the
test resumes too). Its results file says how many frames each stage spent and where the time went.

full_dream: ``experiment=worldmodels_carracing_full_dream`` on the rollouts, V and M of the full run (which must
have finished its M stage), tested the same way; the results file adds the shared stages' time to its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, ROOT, RUNS, read_run, train_seed, write_results

PAPER = {"source": "Ha & Schmidhuber 2018, World Models, Table 1 (CarRacing-v0, 100 random tracks)",
         "full_model_zh": "906 +- 21", "z_only": "632 +- 251", "rollouts": 10000, "population": 64,
         "rollouts_per_candidate": 16, "generations": 1800, "episode_frames": 1000,
         "note": "the paper's env frames: 10,000 rollouts x 1,000 + 1,800 x 64 x 16 x 1,000 = ~1.8e9"}


def throughput(population: int = 16, steps: int = 400, dream_batches=(16, 256)) -> dict:
    import torch

    from wm.agents.cmaes import CMAES, CMAESConfig
    from wm.core.seeds import episode_seed
    from wm.envs.factory import EnvConfig, make_env
    from wm.loops.population import PopulationEnvs
    from wm.models.vae_rnn import VAERNN, VAERNNConfig

    torch.set_num_threads(1)
    cfg = EnvConfig(id="CarRacing-v3", kwargs={"continuous": True}, pixels=True, size=64, action_repeat=2)
    env = make_env(cfg)
    torch.manual_seed(0)
    model = VAERNN(VAERNNConfig(), env.observation_space, env.action_space, torch.device("cpu"))
    agent = CMAES(CMAESConfig(population=population), env.observation_space, env.action_space, model,
                  torch.device("cpu"))
    out: dict = {"population": population, "env": "CarRacing-v3, 64x64 pixels, action repeat 2 (1 step = 2 frames)",
                 "model": "V: ConvVAE z=32 (paper), M: LSTM 256 x 5 mixtures, C: linear on [z, h]"}

    def timed(fn):
        load, t0, c0 = os.getloadavg()[0], time.time(), time.process_time()
        n = fn()
        wall, cpu = time.time() - t0, time.process_time() - c0
        return {"steps": n, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                "steps_per_second": round(n / wall, 1), "steps_per_cpu_second": round(n / cpu, 1),
                "loadavg_1min_at_start": round(load, 2)}

    def raw():
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        return steps

    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.1, (population, agent.dim))
    seeds = [episode_seed(0, 9, i) for i in range(population)]
    out["raw_env"] = timed(raw)
    envs = PopulationEnvs(cfg)  # what the evolution loop steps candidates in
    out["batched_population"] = timed(lambda: envs.evaluate(model, agent, params, seeds, budget=steps)[1])
    out["one_at_a_time"] = timed(lambda: sum(envs.evaluate(model, agent, params[i:i + 1], seeds[i:i + 1],
                                                           budget=steps // population)[1]
                                             for i in range(population)))
    envs.close()
    # where a batched step's time goes: V + C + M alone, on P frames
    frames = np.stack([env.reset(seed=s)[0] for s in seeds])

    def model_only():
        p = torch.as_tensor(params, dtype=torch.float32)
        state = model.rnn.initial_state(population, "cpu")
        for _ in range(steps // population):
            z = model.encode(frames)
            _, a = agent.actions(p, agent.features(z, state[0][0]))
            with torch.no_grad():
                _, state = model.rnn.step(z, a, state)
        return (steps // population) * population

    out["batched_model_forward_only"] = timed(model_only)
    def dream(b: int, horizon: int = 100) -> int:  # a fixed horizon: untrained done heads end dreams at random
        p = torch.as_tensor(np.repeat(params, b // population, 0), dtype=torch.float32)
        z = model.encode(np.repeat(frames, b // population, 0))
        state = model.rnn.initial_state(b, "cpu")
        h, gen = state[0][0], torch.Generator().manual_seed(0)
        for _ in range(horizon):
            _, a = agent.actions(p, agent.features(z, h))
            z, _, _, state, h = model.dream_step(z, a, state, 1.0, gen)
        return b * horizon

    for b in dream_batches:
        out[f"dream_batch_{b}"] = timed(lambda b=b: dream(b))
    real = out["batched_population"]["steps_per_second"]
    out["ratios"] = {
        "batched_vs_raw_env": round(real / out["raw_env"]["steps_per_second"], 2),
        "batched_vs_one_at_a_time": round(real / out["one_at_a_time"]["steps_per_second"], 2),
        **{f"dream_batch_{b}_vs_real_batched": round(out[f"dream_batch_{b}"]["steps_per_second"] / real, 1)
           for b in dream_batches},
    }
    env.close()
    return out


def train(name: str, overrides: list[str], reuse: bool = False) -> dict:
    """One seed through bench.common.train_seed (no bench lock, as the module says); ``reuse``: take a
    completed run dir of the same command instead, with the timings it was measured with."""
    rec = train_seed(name, overrides, 0, None, reuse=reuse, lock=False)
    run_dir, done = RUNS / name / "seed0", rec["reused_run_dir"]
    wall, cpu = rec["wall_seconds"], rec.get("cpu_seconds")
    run = read_run(run_dir)
    gens = [r for r in run["rows"] if "controller/fitness_best" in r]
    stages = {p.stem: json.loads(p.read_text()) for p in (run_dir / "stages").glob("*.json")}
    test = json.loads((run_dir / "test_returns.json").read_text())
    from omegaconf import OmegaConf

    conf = OmegaConf.load(run_dir / "config.yaml")
    s = run["summary"]
    return {
        "train_command": "python train.py " + " ".join(overrides) + " seed=0",
        "run_dir": str(run_dir.relative_to(ROOT)),
        "status": s["status"], "real_env_steps": s["steps"], "total_steps": conf.total_steps,
        "test": {"episodes": len(test["returns"]), "return_mean": float(np.mean(test["returns"])),
                 "return_std": float(np.std(test["returns"])), "return_median": float(np.median(test["returns"])),
                 "return_min": float(np.min(test["returns"])), "return_max": float(np.max(test["returns"])),
                 "returns": test["returns"], "best_controller": test["best"]},
        "generations": [{k.split("/")[1]: r[k] for k in r if k.startswith("controller/")} | {"step": r["step"]}
                        for r in gens],
        "rollouts": {k: v for r in run["rows"] for k, v in r.items() if k.startswith("rollouts/")},
        "stage_seconds": {k: v.get("seconds") for k, v in stages.items()},
        "final_losses": {k: v for r in run["rows"] for k, v in r.items() if k in ("vae/loss", "vae/recon", "vae/kl",
                                                                              "rnn/z_nll", "rnn/reward_mse")},
        "wall_seconds": round(wall, 1), "cpu_seconds": None if cpu is None else round(cpu, 1), "reused": done,
        "loadavg_1min_start": rec.get("loadavg_1min_at_start"), "loadavg_1min_end": rec.get("loadavg_at_end"),
        "config": {"env": OmegaConf.to_container(conf.env), "model": OmegaConf.to_container(conf.model),
                   "agent": OmegaConf.to_container(conf.agent), "eval": OmegaConf.to_container(conf.eval)},
    }


def plot(name: str, runs: dict, title: str = "World Models on CarRacing-v3, reduced CPU scale "
                                               "(paper: 906 +- 21 at ~1.8e9 frames)") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (label, r) in enumerate(runs.items()):
        g = r["generations"]
        xs = [x["generation"] for x in g]
        mean, std = np.array([x["fitness_mean"] for x in g]), np.array([x["fitness_std"] for x in g])
        axes[0].plot(xs, [x["fitness_best"] for x in g], f"C{i}-", label=f"{label}: best")
        axes[0].plot(xs, mean, f"C{i}--", label=f"{label}: mean")
        axes[0].fill_between(xs, mean - std, mean + std, color=f"C{i}", alpha=0.15)
        rx = [x["generation"] for x in g if x.get("reeval_return") is not None]
        axes[0].plot(rx, [x["reeval_return"] for x in g if x.get("reeval_return") is not None], f"C{i}o",
                     label=f"{label}: best re-evaluated (real env)")
        axes[1].hist(r["test"]["returns"], bins=10, color=f"C{i}", alpha=0.6,
                     label=f"{label}: {r['test']['return_mean']:.1f} +- {r['test']['return_std']:.1f}")
    axes[0].set_xlabel("CMA-ES generation")
    axes[0].set_ylabel("fitness (episode return; dream runs: imagined)")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    axes[1].set_xlabel(f"test return on {next(iter(runs.values()))['test']['episodes']} fresh tracks")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


FULL = "worldmodels_carracing_full"


def run_or_resume(run_dir: Path, overrides: list[str]) -> list[dict]:
    """Train until the run dir's summary says completed, resuming from its checkpoint if it has one; each call
    appends a segment (wall and CPU seconds of this process) to ``<run dir>.segments.json``."""
    from wm import checkpoint

    seg_file = run_dir.parent / f"{run_dir.name}.segments.json"
    segments = json.loads(seg_file.read_text()) if seg_file.exists() else []
    status = read_run(run_dir)["summary"]["status"] if (run_dir / "summary.json").exists() else None
    if status != "completed":
        resume = ["resume=true"] if checkpoint.exists(run_dir) else []
        cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}", "progress=false",
               *resume]
        run_dir.mkdir(parents=True, exist_ok=True)
        t0, load = time.time(), os.getloadavg()[0]
        with open(run_dir.parent / f"{run_dir.name}.log", "a") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            _, status_code, usage = os.wait4(proc.pid, 0)
        segments.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0)), "resumed": bool(resume),
                         "wall_seconds": round(time.time() - t0, 1),
                         "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                         "loadavg_1min_at_start": round(load, 2), "exit_code": os.waitstatus_to_exitcode(status_code)})
        seg_file.write_text(json.dumps(segments, indent=1) + "\n")
        if segments[-1]["exit_code"] != 0:
            raise SystemExit(f"{run_dir}: train.py exited {segments[-1]['exit_code']} (log: {run_dir}.log); "
                             f"run `python -m bench.worldmodels full` again to resume")
    return segments


def gymnasium_test(run_dir: Path, episodes: int = 100, wave: int = 10) -> dict:
    """The run's best controller (with its V and M) on ``episodes`` fresh tracks of gymnasium's CarRacing-v3:
    the loop's own test seeds (``episode_seed(seed, EVAL, k)``, tracks no stage saw), kept after every wave."""
    import tempfile

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from wm.core.seeds import EVAL, episode_seed
    from wm.loops.evolution import load_product, stage_source
    from wm.loops.population import PopulationEnvs
    from wm.validate import validate

    out = run_dir / "test_gymnasium.json"
    done = json.loads(out.read_text()) if out.exists() else {"returns": [], "wall_seconds": 0.0, "cpu_seconds": 0.0}
    if len(done["returns"]) >= episodes:
        return done
    saved = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    overrides = [o for o in saved if not o.startswith(("hydra.", "progress", "resume"))] + ["env.backend=gymnasium"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    plan = validate(cfg, Path(tempfile.mkdtemp()))
    obs_space, act_space = plan.spaces
    model = plan.model_cls(plan.model, obs_space=obs_space, act_space=act_space, device=plan.device)
    agent = plan.agent_cls(plan.agent, obs_space=obs_space, act_space=act_space, model=model, device=plan.device)
    model.load_vae_state(load_product((stage_source(plan.model, "vae") or run_dir) / "vae.pt"))
    model.load_rnn_state(load_product((stage_source(plan.model, "mdnrnn") or run_dir) / "mdnrnn.pt"))
    best = load_product(run_dir / "controller.pt")["best"]
    params = np.asarray(best["params"])
    envs = PopulationEnvs(plan.env)
    for start in range(len(done["returns"]), episodes, wave):
        seeds = [episode_seed(plan.run.seed, EVAL, k) for k in range(start, min(episodes, start + wave))]
        t0, c0 = time.time(), time.process_time()
        r, _ = envs.evaluate(model, agent, np.repeat(params[None], len(seeds), 0), seeds)
        done["returns"].extend(float(x) for x in r)
        done["wall_seconds"] += time.time() - t0
        done["cpu_seconds"] += time.process_time() - c0
        done["controller_generation"] = best.get("generation")
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(done) + "\n")
        tmp.replace(out)
        print(f"gymnasium test: {len(done['returns'])}/{episodes} tracks, mean so far {np.mean(done['returns']):.1f}",
              flush=True)
    envs.close()
    return done


def full(extra: list[str], name: str = FULL) -> None:
    run_dir = RUNS / name / "seed0"
    overrides = [f"experiment={name}", "seed=0", *extra]
    shared = {}
    if name != FULL:  # the dream controller on the full run's rollouts, V and M
        src = RUNS / FULL / "seed0"
        if not (src / "stages" / "mdnrnn.json").exists():
            raise SystemExit(f"error: {name} needs {src} with its M stage done: run `python -m bench.worldmodels "
                             f"full` first (stop it once its log says 'stage controller')")
        overrides[2:2] = [f"model.stages.rollouts_from={src}", f"model.stages.mdnrnn_from={src}"]
        shared = {"run_dir": str(src.relative_to(ROOT)), "stage_seconds": {
            p.stem: json.loads(p.read_text()).get("seconds") for p in (src / "stages").glob("*.json")}}
    segments = run_or_resume(run_dir, overrides)
    test = gymnasium_test(run_dir)
    run = read_run(run_dir)
    rows, s = run["rows"], run["summary"]
    stages = {p.stem: json.loads(p.read_text()) for p in (run_dir / "stages").glob("*.json")}
    gens = [{k.split("/")[1]: r[k] for k in r if k.startswith("controller/")} | {"step": r["step"]}
            for r in rows if "controller/fitness_best" in r]
    loop_test = json.loads((run_dir / "test_returns.json").read_text())["returns"]
    rets = np.array(test["returns"])
    summary = {"episodes": len(rets), "return_mean": float(rets.mean()), "return_std": float(rets.std()),
               "return_median": float(np.median(rets)), "return_min": float(rets.min()),
               "return_max": float(rets.max()), "at_least_700": int((rets >= 700).sum()),
               "controller_generation": test.get("controller_generation"),
               "wall_seconds": round(test["wall_seconds"], 1), "cpu_seconds": round(test["cpu_seconds"], 1)}
    res = {
        "command": "python -m bench.worldmodels full " + " ".join(extra),
        "train_command": "python train.py " + " ".join(overrides), "run_dir": str(run_dir.relative_to(ROOT)),
        "paper": PAPER, "goal": ">= 700 mean over 100 fresh tracks (goal 900), <= 3 h wall on 2 cores",
        "test_gymnasium_100": summary, "test_returns_gymnasium": test["returns"],
        "test_envpool_100": {"return_mean": float(np.mean(loop_test)), "return_std": float(np.std(loop_test))},
        "agent_steps": {"total": s["steps"], "frames": 2 * s["steps"],
                        **{k: v for r in rows for k, v in r.items() if k.startswith("rollouts/")},
                        "controller": s["steps"] - sum(r.get("rollouts/steps", 0) for r in rows)},
        "stage_seconds": {k: v.get("seconds") for k, v in stages.items()},
        "train_wall_seconds": s.get("wall_seconds"), "segments": segments,
        "train_cpu_seconds": round(sum(x["cpu_seconds"] for x in segments), 1), "generations": gens,
        **({"shared_rollouts_v_m": shared} if shared else {}),
    }
    write_results(name, res)
    where = "in M's dream" if shared else "on EnvPool"
    plot(name, {f"CMA-ES {where}, tested on gymnasium": {"generations": gens, "test": summary | {"returns": test["returns"]}}},
         title="World Models on full CarRacing-v3 tracks, 2-core CPU scale (paper: 906 +- 21 at ~1.8e9 frames)")
    print(f"{name}: {summary['return_mean']:.1f} +- {summary['return_std']:.1f} over {summary['episodes']} "
          f"gymnasium tracks; train wall {s.get('wall_seconds')} s")


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in ("full", "full_dream"):
        full([a for a in args if "=" in a], FULL if args[0] == "full" else f"{FULL}_dream")
        return
    what = args[0] if args and args[0] in ("throughput", "run") else "all"
    extra = [a for a in args if "=" in a]
    reuse = "--reuse" in args  # keep completed run dirs (e.g. rerun only the dream part)
    if what in ("throughput", "all"):
        res = throughput()
        path = write_results("worldmodels_throughput", {"command": "python -m bench.worldmodels throughput",
                                                        "torch_threads": 1, **res})
        print(f"wrote {path}: {json.dumps(res['ratios'])}")
    if what in ("run", "all"):
        real_name, dream_name = "worldmodels_carracing", "worldmodels_carracing_dream"
        real = train(real_name, ["experiment=worldmodels_carracing", *extra], reuse)
        src = ROOT / real["run_dir"]
        dream = train(dream_name, ["experiment=worldmodels_carracing_dream", f"model.stages.rollouts_from={src}",
                                   f"model.stages.mdnrnn_from={src}", *extra], reuse)
        runs = {"CMA-ES in the real env": real, "CMA-ES in the dream (V, M and rollouts reused)": dream}
        write_results(real_name, {"command": "python -m bench.worldmodels run " + " ".join(extra),
                                  "paper": PAPER, "runs": runs})
        plot(real_name, runs)
        for label, r in runs.items():
            print(f"{label}: test {r['test']['return_mean']:.1f} +- {r['test']['return_std']:.1f} over "
                  f"{r['test']['episodes']} tracks, {r['real_env_steps']} real env steps, {r['wall_seconds']} s")


if __name__ == "__main__":
    main()
