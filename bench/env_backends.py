"""CarRacing-v3 on the two env backends, side by side in one run (issue 16).

    python -m bench.env_backends              # ~4 min on 2 cores; results/env_backends.json
    python -m bench.env_backends --frames 300 # quicker, noisier

For each backend (gymnasium, envpool) through wm.envs.factory.make_env with conf/env/carracing.yaml's settings
(64x64 frames, but action repeat 1 so every number counts env frames):
- one env, random actions: frames per wall second and per CPU second;
- the vector sizes the presets use (SyncVectorEnv, one env after another, as the loops step them);
- the World Models population evaluation (``PopulationEnvs.evaluate``: V, C and M batched per step, untrained
  weights, which cost the same as trained ones) of experiment=worldmodels_carracing's population on
  full-length tracks: agent steps (2 frames each) per second;
and, for reference, EnvPool's own batched pool (its C++ threads) at the same sizes.
CPU seconds come from the process clock (all threads), so they hold on a loaded machine; the wall rates only
when nothing else runs (the benchmark takes /tmp/wm-bench.lock).
"""

from __future__ import annotations

import argparse
import fcntl
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from bench.common import LOCK, ROOT, write_results

BACKENDS = ("gymnasium", "envpool")


def timed(fn: Callable[[], int]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"frames": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "per_wall_s": round(n / wall, 1), "per_cpu_s": round(n / max(cpu, 1e-9), 1)}


def compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def env_cfg(backend: str):
    from wm.config import typed
    from wm.envs.factory import EnvConfig

    return replace(typed(EnvConfig, compose(["env=carracing"]).env, "env"), backend=backend, action_repeat=1)


def step_vector(backend: str, n: int, frames: int) -> dict[str, float]:
    """Frames of ``n`` envs stepped as the online loop steps them (made and reset before the clock starts;
    finished envs reset with a seed, as the loop does)."""
    from wm.envs.factory import make_vec_env

    envs = make_vec_env(env_cfg(backend), n)
    envs.action_space.seed(0)
    envs.reset(seed=list(range(n)))

    def run() -> int:
        done_total = 0
        while done_total < frames:
            _obs, _r, term, trunc, _ = envs.step(envs.action_space.sample())
            done_total += n
            if (term | trunc).any():
                done = term | trunc
                envs.reset(seed=[int(1000 + done_total + i) if d else None for i, d in enumerate(done)],
                           options={"reset_mask": done})
        return done_total

    out = timed(run)
    envs.close()
    return out


def step_native(n: int, frames: int) -> dict[str, float]:
    """EnvPool's own batched pool: the C++ envs step in its threads (autoreset inside the pool; 96x96 frames)."""
    import envpool

    pool = envpool.make_gymnasium("CarRacing-v3", num_envs=n, seed=0)
    pool.reset()
    rng = np.random.default_rng(0)
    low, high = np.array([-1.0, 0.0, 0.0]), np.ones(3)

    def run() -> int:
        steps = 0
        while steps < frames:
            pool.step(rng.uniform(low, high, (n, 3)).astype(np.float32))
            steps += n
        return steps

    out = timed(run)
    pool.close()
    return out


def population(backend: str, budget: int) -> dict[str, Any]:
    """experiment=worldmodels_carracing's population (P x R episodes) on full tracks, V/C/M batched."""
    import tempfile
    from pathlib import Path

    from wm.loops.population import PopulationEnvs
    from wm.validate import validate

    cfg = compose(["experiment=worldmodels_carracing", f"env.backend={backend}", "~env.max_episode_steps"])
    plan = validate(cfg, Path(tempfile.mkdtemp()))
    obs_space, act_space = plan.spaces
    model = plan.model_cls(plan.model, obs_space=obs_space, act_space=act_space, device=plan.device)
    agent = plan.agent_cls(plan.agent, obs_space=obs_space, act_space=act_space, model=model, device=plan.device)
    n = plan.agent.population * plan.agent.rollouts
    params = np.random.default_rng(0).normal(0, 0.1, (n, agent.dim))
    envs = PopulationEnvs(plan.env)
    steps = {}

    def run() -> int:
        _returns, steps["n"] = envs.evaluate(model, agent, params, list(range(n)), budget=budget)
        return steps["n"]

    out = timed(run)
    envs.close()
    out["episodes"] = n
    out["agent_steps"] = out.pop("frames")  # each = action_repeat (2) env frames
    for key in ("per_wall_s", "per_cpu_s"):
        out[key.replace("per", "agent_steps_per")] = out.pop(key)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=600, help="env frames per measurement")
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 10],
                   help="vector sizes (the World Models population 8 x 1, its 10 eval envs)")
    p.add_argument("--population-steps", type=int, default=2400, help="agent steps of the population evaluation")
    p.add_argument("--name", default="env_backends", help="results file name (e.g. a re-check on another CPU)")
    a = p.parse_args()
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results: dict[str, Any] = {b: {} for b in BACKENDS}
        for backend in BACKENDS:
            for n in [1, *a.sizes]:
                results[backend][str(n)] = step_vector(backend, n, a.frames)
            results[backend]["population"] = population(backend, a.population_steps)
            print(backend, results[backend], flush=True)
        results["envpool_native"] = {str(n): step_native(n, 4 * a.frames) for n in [1, *a.sizes]}
        speedup = {k: round(results["envpool"][k]["per_cpu_s"] / results["gymnasium"][k]["per_cpu_s"], 1)
                   for k in ["1", *map(str, a.sizes)]}
        speedup["population"] = round(results["envpool"]["population"]["agent_steps_per_cpu_s"]
                                      / results["gymnasium"]["population"]["agent_steps_per_cpu_s"], 1)
        path = write_results(a.name, {
            "command": "python -m bench.env_backends " + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(a).items() if k != "name" or v != "env_backends"),
            "env": "CarRacing-v3, 64x64 frames (conf/env/carracing.yaml), action repeat 1, random actions",
            "results": results, "envpool_speedup_per_cpu_s": speedup})
        print(f"wrote {path}: envpool / gymnasium per CPU second {speedup}")


if __name__ == "__main__":
    main()
