"""DIAMOND vs Dreamer on CartPole from pixels (issue 17, agent half), and where DIAMOND's time goes.

    python -m bench.diamond [--seeds 0 1 2] [--steps 20000] [--parallel 2] [--speed-only]
        -> bench/results/diamond_cartpole_pixels.json + .png (eval return vs env steps, every seed)
    python -m bench.diamond --diagnose RUN_DIR
        -> bench/results/diamond_cartpole_pixels_diagnosis.json: does the run's imagination respond to actions?

Learning: ``experiment=diamond_cartpole_pixels`` (model=diffusion_world, agent=frame_actor_critic) and
``experiment=dreamer_cartpole_pixels`` (model=rssm, agent=actor_critic) on the same 32x32 CartPole frames, the
same env steps, seeds and evaluations (10 deterministic episodes every 2,000 env steps), one torch thread each;
per seed the eval curve, the final and best returns, wall and CPU seconds (bench.common.train_seed).

Speed (``speed``, in this process, one torch thread, the DIAMOND preset's networks, untrained: the cost does not
depend on the weights): imagined frames per second at batch 32 with 1 and 3 denoising steps, updates per second of
the denoiser, the reward / end model and the actor-critic, and torch.profiler's top operators of one actor-critic
update (where imagination spends its time).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import plot_curves, spread, train_seed, write_results

NAME = "diamond_cartpole_pixels"
ALGOS = {"diamond": "experiment=diamond_cartpole_pixels", "dreamer": "experiment=dreamer_cartpole_pixels"}


def preset_parts():
    """The DIAMOND preset's model and agent, built as train.py builds them, with a replay of random frames."""
    import tempfile
    from pathlib import Path

    import torch

    from bench.env_backends import compose
    from wm.data.replay import Replay
    from wm.run import online_parts
    from wm.validate import validate

    with tempfile.TemporaryDirectory() as tmp:
        plan = validate(compose(["experiment=diamond_cartpole_pixels", "device=cpu"]), Path(tmp))
    obs_space, act_space = plan.spaces
    torch.manual_seed(0)
    agent, model = online_parts(plan)
    rng = np.random.default_rng(0)
    replay = Replay(4000, 4, obs_space, act_space, seed=0)
    for t in range(500):
        replay.add(np.arange(4), obs=rng.integers(0, 255, (4, *obs_space.shape), dtype=np.uint8),
                   action=rng.integers(0, act_space.n, 4), reward=np.ones(4, np.float32),
                   is_first=np.full(4, t % 100 == 0), is_last=np.full(4, t % 100 == 99), is_terminal=np.zeros(4, bool))
    return model, agent, replay


def speed(repeats: int = 5) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    model, agent, replay = preset_parts()
    model.train_step(replay, 0)

    def rate(fn, n: int = repeats) -> float:
        fn()  # warm-up
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return n / (time.process_time() - t0)

    start = model.start_states(replay, 32)
    action = torch.nn.functional.one_hot(torch.zeros(32, dtype=torch.long), model.act_dim).float()
    out = {"batch": 32, "frame_size": int(model.size), "imagined_frames_per_cpu_s": {}}
    follow = torch.cat([start["actions"][:, 1:], action[:, None]], 1)
    for steps in (1, 3):
        out["imagined_frames_per_cpu_s"][steps] = round(32 * rate(
            lambda s=steps: model.frames.sample_next(start["frames"], follow, steps=s)), 1)

    def reward_update():
        loss, _ = model.reward_loss(replay)
        model.reward_opt.zero_grad()
        loss.backward()
        model.reward_opt.step()

    out["updates_per_cpu_s"] = {
        "denoiser": round(rate(lambda: model.frames.optimize(model.denoiser_loss(replay), 100)), 2),
        "reward_end_model": round(rate(reward_update), 2),
        "actor_critic": round(rate(lambda: agent.train_step(replay, 0), 2), 2)}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        agent.train_step(replay, 0)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    out["actor_critic_profile_top_ops"] = [
        {"op": e.key, "self_cpu_share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in ops]
    out["actor_critic_update"] = {"starts": agent.cfg.starts, "horizon": agent.cfg.horizon,
                                  "denoising_steps": model.cfg.denoising_steps}
    return out


def diagnose(run_dir: Path, starts: int = 64, horizon: int = 15) -> dict:
    """Whether a DIAMOND run's world model can teach its actor anything, from its latest checkpoint: the imagined
    return of ``horizon`` steps from the same ``starts`` replay windows and the same sampling noise under
    constant-left, constant-right and alternating actions; the denoiser's loss with the true actions and with
    every action flipped, at fixed noise levels; and the sampled next frame's error against copying the last
    frame, next to how much the true frame changes and how much flipping the action changes the sample."""
    import torch

    from wm.run import replay_from, restore_checkpoint

    torch.manual_seed(0)
    plan, _, model, state = restore_checkpoint(run_dir)
    replay = replay_from(plan, state)
    onehot = lambda a: torch.nn.functional.one_hot(torch.as_tensor(a), model.act_dim).float()
    start = model.start_states(replay, starts)
    returns = {}
    for name, pick in {"left": lambda t: 0, "right": lambda t: 1, "alternating": lambda t: t % 2}.items():
        g = torch.Generator().manual_seed(1)
        frames, actions, rstate = start["frames"], start["actions"], start["reward_state"]
        alive, ret = torch.ones(starts), torch.zeros(starts)
        for t in range(horizon):
            a = onehot(torch.full((starts,), pick(t)))
            nxt, reward, p_end, rstate = model.imagine_step(frames, actions, a, rstate, generator=g)
            frames, actions = torch.cat([frames[:, 1:], nxt[:, None]], 1), torch.cat([actions[:, 1:], a[:, None]], 1)
            ret, alive = ret + alive * reward, alive * (1 - p_end)
        returns[name] = round(float(ret.mean()), 3)
    rows = replay.sample_sequences(512, model.k + 1)
    frames, actions = model.window(rows)
    valid = ~rows["is_first"][:, -1]
    cond, target, acts = frames[valid, :-1], frames[valid, -1], actions[valid, 1:]
    flipped = acts.flip(-1) * (acts.sum(-1, keepdim=True) > 0)
    loss = {}
    with torch.no_grad():
        for sigma in (0.05, 0.2, 0.5, 1.0):
            noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
            s = torch.full((len(target),), sigma)
            loss[sigma] = {k: round(float(((model.frames.denoise(target + sigma * noise, s, cond, a)[0] - target) ** 2)
                                          .mean()), 6) for k, a in (("true_actions", acts), ("flipped_actions", flipped))}
    n = min(128, len(target))
    sample = lambda a: model.frames.sample_next(cond[:n], a[:n], generator=torch.Generator().manual_seed(3))
    pred, pred_flip = sample(acts), sample(flipped)
    mae = lambda x, y: round(float((x - y).abs().mean()), 5)
    return {"run_dir": str(run_dir), "env_steps": int(state["step"]), "starts": starts, "horizon": horizon,
            "imagined_return": returns, "denoiser_mse_by_sigma": loss,
            "next_frame_mae": {"sampled_vs_true": mae(pred, target[:n]), "copy_last_vs_true": mae(cond[:n, -1], target[:n]),
                               "sampled_true_vs_flipped_actions": mae(pred, pred_flip)},
            "actor_entropy_nats_max": round(float(np.log(model.act_dim)), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20000, help="env steps per run")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--diagnose", type=Path, metavar="RUN_DIR", help="only the imagination check of one run")
    args = p.parse_args()
    if args.diagnose:
        out = {"command": f"python -m bench.diamond --diagnose {args.diagnose}", **diagnose(args.diagnose)}
        print(out, flush=True)
        print(f"wrote {write_results(NAME + '_diagnosis', out)}")
        return
    results = {"command": f"python -m bench.diamond --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} "
                          f"--parallel {args.parallel}" + (" --speed-only" if args.speed_only else ""),
               "speed": speed()}
    print(results["speed"], flush=True)
    if not args.speed_only:
        jobs = [(algo, s) for s in args.seeds for algo in ALGOS]
        budget = [f"total_steps={args.steps}", "device.threads=1"]
        with ThreadPoolExecutor(args.parallel) as pool:
            recs = list(pool.map(lambda j: (j[0], train_seed(f"{NAME}_{j[0]}", [ALGOS[j[0]], *budget], j[1], None,
                                                             reuse=True, lock=args.parallel == 1)), jobs))
        groups = {algo: [r for a, r in recs if a == algo] for algo in ALGOS}
        results.update({
            "budget": {"env_steps": args.steps, "presets": ALGOS, "threads": 1, "parallel": args.parallel},
            "summary": {algo: {k: spread([r[k] for r in rs]) for k in ("final", "best", "wall_seconds", "cpu_seconds")}
                        for algo, rs in groups.items()},
            "goal_diamond_final_at_least_dreamer": (spread([r["final"] for r in groups["diamond"]])["median"]
                                                    >= spread([r["final"] for r in groups["dreamer"]])["median"]),
            "seeds": groups})
        plot_curves(NAME, {"DIAMOND (diffusion world model)": groups["diamond"], "Dreamer (RSSM)": groups["dreamer"]})
    print(f"wrote {write_results(NAME if not args.speed_only else NAME + '_speed', results)}")


if __name__ == "__main__":
    main()
