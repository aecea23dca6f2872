"""Multimodal Dreamer on DeepMind Control (issue 20): image only, joints only, both, and both trained with modality
gaps, at the same env steps, on two tasks.

    WM_BENCH_LOCK=0 python -m bench.multimodal [--tasks cartpole_balance reacher_easy] [--seeds 0 1] [--steps 10000]
        [--parallel 2]
        -> bench/results/multimodal_dmc.json + multimodal_dmc_<task>.png

Every run is ``experiment=dreamer_dmc`` plus its variant (one torch thread; completed runs are reused, a stopped one
resumes from its checkpoint when the command runs again, so the study can span sessions):
- image: ``env.pixels=true`` (64x64 frames);
- vector: ``env.proprio=joints``: joint positions and velocities only, none of the task's features (reacher's
  target is not in them: the image is needed to know where to reach; cartpole's are all of its state);
- both: ``env.pixels=true env.proprio=joints``;
- both+dropout: the same with ``env.miss_ratio=0.05`` (MuMMI: each modality missing 5% of steps, gaps up to 15).
From each run's final checkpoint (``wm.run.restore``), on the evaluation seed stream:
- return at test miss ratios 0, 0.05 and 0.1 (multimodal runs; ``episodes`` greedy episodes each);
- 15-step open-loop reward error: the posterior after 5 real steps of replay sequences, then 15 imagined steps
  with the real actions, |predicted - real reward| averaged over the 15 steps;
- a linear probe: ridge regression from the latent feature [h, z] to the true state (the task's full feature
  vector, target included, read from the simulator), fitted on the first half of the ratio-0 episodes and scored
  (R^2 over the state's dimensions, each scaled by its spread) on the second half.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.common import RUNS, final_over_last, plot_curves, spread, train_seed, write_results

NAME = "multimodal_dmc"
# learnable within a CPU budget (10k agent steps, 20k frames): cartpole-balance starts upright with a dense reward
# and its joints hold the whole state; reacher-easy's target is only in the image when the vector is joints only.
# (cartpole-swingup was tried first: its image-only run was still at its random return, ~73, after 7k agent steps.)
TASKS = {"cartpole_balance": "dm_control/cartpole-balance-v0", "reacher_easy": "dm_control/reacher-easy-v0"}
VARIANTS = {
    "image": ["env.pixels=true"],
    "vector": ["env.proprio=joints"],
    "both": ["env.pixels=true", "env.proprio=joints"],
    "both+dropout": ["env.pixels=true", "env.proprio=joints", "env.miss_ratio=0.05"],
}
MISS_RATIOS = (0.0, 0.05, 0.1)


def run_name(task: str, variant: str) -> str:
    return f"{NAME}_{task}_{variant.replace('+', '_')}"


def true_state(env) -> np.ndarray:
    """The task's full feature vector (e.g. reacher: arm position, target vector, velocities) from the simulator."""
    inner = env.unwrapped._env
    obs = inner.task.get_observation(inner.physics)
    return np.concatenate([np.asarray(v, np.float64).ravel() for v in obs.values()])


def episodes(plan, agent, model, miss_ratio: float, n: int, seed: int) -> tuple[list[float], np.ndarray, np.ndarray]:
    """``n`` greedy episodes of a restored run's policy with modalities missing at ``miss_ratio``: returns, and the
    latent features and true states along them (N, F), (N, S)."""
    import torch

    from wm.core.seeds import EVAL, episode_seed
    from wm.data.replay import tree_map
    from wm.envs.factory import make_env

    env = make_env(dataclasses.replace(plan.env, miss_ratio=miss_ratio))
    returns, feats, states = [], [], []
    for k in range(n):
        obs, _ = env.reset(seed=episode_seed(seed, EVAL, k))
        state, first, ret, done = None, np.ones(1, bool), 0.0, False
        while not done:
            states.append(true_state(env))
            with torch.no_grad():
                action, state = agent.act(tree_map(lambda o: np.asarray(o)[None], obs), state, first, explore=False)
                feats.append(model.feat(state[0])[0].numpy())
            obs, reward, term, trunc, _ = env.step(action[0])
            ret, first, done = ret + float(reward), np.zeros(1, bool), term or trunc
        returns.append(ret)
    env.close()
    return returns, np.array(feats), np.array(states)


def probe_r2(feats: np.ndarray, states: np.ndarray, ridge: float = 1e-2) -> float:
    """Ridge regression feat -> state on the first half of the rows, R^2 on the rest: 1 - error / variance, both
    summed over the state's dimensions after scaling each by its spread over all rows (a dimension that hardly
    moves in the second half would otherwise blow a per-dimension R^2 up)."""
    half = len(feats) // 2
    scale = states.std(0)
    keep = scale > 1e-8
    z = states[:, keep] / scale[keep]
    mu, sd = feats[:half].mean(0), feats[:half].std(0) + 1e-6
    x = np.c_[(feats - mu) / sd, np.ones(len(feats))]
    w = np.linalg.solve(x[:half].T @ x[:half] + ridge * half * np.eye(x.shape[1]), x[:half].T @ z[:half])
    err = ((x[half:] @ w - z[half:]) ** 2).mean(0)
    return float(1.0 - err.sum() / z[half:].var(0).sum())


def reward_error(model, replay, sequences: int = 32, context: int = 5, horizon: int = 15) -> float:
    """Mean |predicted - real| reward over ``horizon`` open-loop steps after ``context`` observed ones, on
    sequences of the run's own replay."""
    import torch

    from wm.data.replay import tree_map

    batch = replay.sample_sequences(sequences, context + horizon)
    with torch.no_grad():
        obs = model.preprocess(batch["obs"])
        action = model.encode_action(batch["action"])
        first = batch["is_first"].float()
        post = model.observe(model.encoder(tree_map(lambda o: o[:, :context], obs)), action[:, :context],
                             first[:, :context])
        state = {k: v[:, -1] for k, v in post.items()}
        errors = []
        for t in range(context, context + horizon):
            state = model.img_step(state, action[:, t], sample=False)
            pred = model.reward(model.feat(state)).mean()
            live = ~(batch["is_first"][:, context:t + 1].any(1))  # the sequence crossed no episode start
            errors.append((pred - batch["reward"][:, t].float()).abs()[live])
    return float(torch.cat(errors).mean())


def analyse(task: str, variant: str, seed: int, rec: dict, episodes_per_ratio: int) -> dict:
    """The run's final checkpoint, read once: returns at each miss ratio, the probe, the open-loop reward error.
    Kept beside the run (seed<S>.analysis.json), so a study that stops and starts again does not redo it."""
    from wm.run import replay_from, restore_checkpoint

    run_dir = RUNS / run_name(task, variant) / f"seed{seed}"
    cache = run_dir.parent / f"seed{seed}.analysis.json"
    out = json.loads(cache.read_text()) if cache.exists() else {}
    if out.get("episodes") != episodes_per_ratio or not rec["reused_run_dir"]:
        plan, agent, model, state = restore_checkpoint(run_dir)
        out = {"episodes": episodes_per_ratio, "return_at_miss": {}}
        for r in MISS_RATIOS if variant.startswith("both") else (0.0,):
            rets, feats, states = episodes(plan, agent, model, r, episodes_per_ratio, seed)
            out["return_at_miss"][str(r)] = float(np.mean(rets))
            if r == 0.0:
                out["probe_r2"] = round(probe_r2(feats, states), 4)
        out["reward_error_15"] = round(reward_error(model, replay_from(plan, state)), 4)
        cache.write_text(json.dumps(out) + "\n")
    return {"seed": seed, "final": rec["final"], "last_eval": rec["last_eval"], "curve": rec["curve"],
            "wall_seconds": rec["wall_seconds"], "cpu_seconds": rec.get("cpu_seconds"), **out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=10_000, help="agent steps per run (x2 env frames)")
    p.add_argument("--episodes", type=int, default=4, help="evaluation episodes per miss ratio")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    args = p.parse_args()
    jobs = [(t, v, s) for s in args.seeds for t in args.tasks for v in args.variants]
    budget = [f"total_steps={args.steps}", "device.threads=1"]

    def job(j):
        task, variant, seed = j
        rec = train_seed(run_name(task, variant), ["experiment=dreamer_dmc", f"env.id={TASKS[task]}",
                                                   *VARIANTS[variant], *budget], seed, None, reuse=True,
                         lock=args.parallel == 1, resume=True)
        return task, variant, analyse(task, variant, seed, final_over_last(rec), args.episodes)

    with ThreadPoolExecutor(args.parallel) as pool:
        done = list(pool.map(job, jobs))
    results = {t: {v: [r for tt, vv, r in done if (tt, vv) == (t, v)] for v in args.variants} for t in args.tasks}
    summary = {t: {v: {"final": spread([r["final"] for r in rs]),
                       "return_at_miss": {m: spread([r["return_at_miss"].get(m) for r in rs])
                                          for m in map(str, MISS_RATIOS) if m in rs[0]["return_at_miss"]},
                       "probe_r2": spread([r["probe_r2"] for r in rs]),
                       "reward_error_15": spread([r["reward_error_15"] for r in rs]),
                       "wall_seconds": spread([r["wall_seconds"] for r in rs])}
                   for v, rs in vs.items()} for t, vs in results.items()}
    for task, variants in results.items():
        plot_curves(f"{NAME}_{task}", dict(variants), xlabel="agent steps (x2 env frames)")
    path = write_results(NAME, {
        "command": f"python -m bench.multimodal --tasks {' '.join(args.tasks)} --variants {' '.join(args.variants)} "
                   f"--seeds {' '.join(map(str, args.seeds))} --steps {args.steps} --episodes {args.episodes} "
                   f"--parallel {args.parallel}",
        "budget": {"agent_steps": args.steps, "env_frames": 2 * args.steps, "preset": "experiment=dreamer_dmc",
                   "threads": 1, "parallel": args.parallel},
        "variants": VARIANTS, "tasks": TASKS, "summary": summary, "runs": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
