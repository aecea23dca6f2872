"""CartPole-v1 offline datasets following the D4RL recipe, made by one command and cached (issue 18).

    python -m bench.offline_data                 # -> outputs/datasets/wm/cartpole-*-v0 + results/offline_datasets_cartpole.json
    python -m bench.offline_data --root DIR      # another datasets root (MINARI_DATASETS_PATH for the runs)

- expert: 50,000 greedy steps of a DQN trained to the end of `experiment=dqn_cartpole` (50k env steps);
- medium: 50,000 greedy steps of a DQN of the same preset stopped at its first evaluation >= 170 (a third of
  the expert's 500; D4RL's medium is a policy at about a third to a half of expert);
- medium-replay: that medium run's whole replay (every episode it collected up to the stop);
- medium-expert: medium and expert together (50/50).
Reference returns for normalised scores: random = mean of 100 uniformly random episodes, expert = the expert
dataset's mean return. Datasets already in the root are kept (delete them to remake); the training runs are
reused when complete (bench.common.train_seed with reuse).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

from bench.common import ROOT, RUNS, read_run, train_seed, write_results

STEPS = 50_000
MEDIUM_STOP = 170.0


def random_return(episodes: int = 100) -> float:
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    total = []
    for k in range(episodes):
        env.reset(seed=10_000 + k)
        ret, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            ret, done = ret + r, term or trunc
        total.append(ret)
    return float(np.mean(total))


def policy_episodes(run_dir: Path, steps: int, seed: int) -> list[dict]:
    from wm.data import offline
    from wm.envs.factory import make_env
    from wm.run import restore

    plan, agent, _ = restore(run_dir)
    env = make_env(plan.env)
    return offline.rollout(lambda obs, state, first: agent.act(obs, state, first, explore=False), env, steps, seed)


def stats(episodes: list[dict]) -> dict:
    rets = [float(e["rewards"].sum()) for e in episodes]
    return {"episodes": len(episodes), "steps": int(sum(len(e["rewards"]) for e in episodes)),
            "return_mean": round(float(np.mean(rets)), 2), "return_std": round(float(np.std(rets)), 2),
            "return_min": float(np.min(rets)), "return_max": float(np.max(rets))}


def main() -> None:
    from wm import checkpoint
    from wm.data import offline

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "datasets")
    args = p.parse_args()
    expert_rec = train_seed("offline_cartpole_expert", ["experiment=dqn_cartpole"], 0, 475.0, reuse=True)
    medium_rec = train_seed("offline_cartpole_medium", ["experiment=dqn_cartpole", "eval.every=1000",
                                                        f"eval.stop_at={MEDIUM_STOP}"], 0, MEDIUM_STOP, reuse=True)
    expert_dir, medium_dir = RUNS / "offline_cartpole_expert" / "seed0", RUNS / "offline_cartpole_medium" / "seed0"
    expert = policy_episodes(expert_dir, STEPS, seed=1)
    medium = policy_episodes(medium_dir, STEPS, seed=2)
    rep = checkpoint.load(medium_dir)["replay"]
    replay = offline.episodes_from_rows(rep["data"], rep["count"], rep["data"]["obs"].shape[1])
    ref_min, ref_max = random_return(), stats(expert)["return_mean"]
    env = gym.make("CartPole-v1")
    made = {}
    for name, eps, source in (("expert", expert, f"greedy DQN {expert_dir.relative_to(ROOT)}"),
                              ("medium", medium, f"greedy DQN {medium_dir.relative_to(ROOT)}"),
                              ("medium-replay", replay, f"the replay of {medium_dir.relative_to(ROOT)}"),
                              ("medium-expert", medium + expert, "medium + expert")):
        dataset_id = f"wm/cartpole-{name}-v0"
        if not (args.root / dataset_id).exists():
            offline.write(dataset_id, eps, env="CartPole-v1", observation_space=env.observation_space,
                          action_space=env.action_space, root=args.root, algorithm="wm dqn (bench.offline_data)",
                          description=f"CartPole-v1 {name} (D4RL recipe): {source}", ref_min_score=ref_min,
                          ref_max_score=ref_max)
        data = offline.episodes(offline.load(args.root / dataset_id))
        made[name] = {"id": dataset_id, "source": source, **stats(data)}
        print(name, made[name], flush=True)
    runs = {name: {"final_eval": read_run(d)["summary"].get("eval/return_mean"), "steps": read_run(d)["summary"]["steps"],
                   "cpu_seconds": rec.get("cpu_seconds")}
            for name, d, rec in (("expert", expert_dir, expert_rec), ("medium", medium_dir, medium_rec))}
    path = write_results("offline_datasets_cartpole", {
        "command": "python -m bench.offline_data", "root": str(args.root), "ref_min_score": round(ref_min, 2),
        "ref_max_score": ref_max, "policies": runs, "datasets": made})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
