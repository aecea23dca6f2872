"""Offline datasets following the D4RL recipe, made by one command and cached (issue 18): CartPole-v1 from DQN,
Hopper-v5 from SAC.

    python -m bench.offline_data [--task cartpole]   # -> outputs/datasets/wm/cartpole-*-v0 + results/offline_datasets_cartpole.json
    python -m bench.offline_data --task hopper       # -> outputs/datasets/wm/hopper-*-v0 + results/offline_datasets_hopper.json
    python -m bench.offline_data --root DIR          # another datasets root (MINARI_DATASETS_PATH for the runs)

- expert: greedy steps of a policy trained to the end of its preset (CartPole: `experiment=dqn_cartpole`, 50k env
  steps; Hopper: `experiment=sac_hopper`, SAC for 300k env steps);
- medium: greedy steps of the same preset stopped at its first evaluation at a third of the expert's return
  (D4RL's medium is a policy at about a third to a half of expert): CartPole 170 of 500, Hopper a third of what
  the expert run reached;
- medium-replay: that medium run's whole replay (every episode it collected up to the stop);
- medium-expert: medium and expert together (50/50).
Reference returns for normalised scores: random = mean of 100 uniformly random episodes, expert = the expert
dataset's mean return. Datasets already in the root are kept (delete them to remake); the training runs are
reused when complete and resume when stopped (bench.common.train_seed), so the Hopper expert (about an hour of
one core) can span sessions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

from bench.common import ROOT, RUNS, read_run, train_seed, write_results

# per task: env id, preset, dataset steps per policy, the medium stop (None: a third of the expert's final eval),
# the medium run's eval cadence (fine enough to stop near the target), the learner's name
TASKS = {
    "cartpole": {"env": "CartPole-v1", "preset": "experiment=dqn_cartpole", "steps": 50_000, "medium_stop": 170.0,
                 "medium_every": 1000, "learner": "DQN"},
    "hopper": {"env": "Hopper-v5", "preset": "experiment=sac_hopper", "steps": 200_000, "medium_stop": None,
               "medium_every": 5000, "learner": "SAC"},
}


def random_return(env_id: str, episodes: int = 100) -> float:
    env = gym.make(env_id)
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
    p.add_argument("--task", choices=list(TASKS), default="cartpole")
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "datasets")
    args = p.parse_args()
    task = TASKS[args.task]
    expert_rec = train_seed(f"offline_{args.task}_expert", [task["preset"]], 0, None, reuse=True, resume=True)
    expert_dir, medium_dir = (RUNS / f"offline_{args.task}_{k}" / "seed0" for k in ("expert", "medium"))
    stop = task["medium_stop"] or round(read_run(expert_dir)["summary"]["eval/return_mean"] / 3)
    medium_rec = train_seed(f"offline_{args.task}_medium", [task["preset"], f"eval.every={task['medium_every']}",
                                                            f"eval.stop_at={stop}"], 0, stop, reuse=True, resume=True)
    expert = policy_episodes(expert_dir, task["steps"], seed=1)
    medium = policy_episodes(medium_dir, task["steps"], seed=2)
    rep = checkpoint.load(medium_dir)["replay"]
    replay = offline.episodes_from_rows(rep["data"], rep["count"], rep["data"]["obs"].shape[1])
    ref_min, ref_max = random_return(task["env"]), stats(expert)["return_mean"]
    env = gym.make(task["env"])
    learner = f"greedy {task['learner']}"
    made = {}
    for name, eps, source in (("expert", expert, f"{learner} {expert_dir.relative_to(ROOT)}"),
                              ("medium", medium, f"{learner} {medium_dir.relative_to(ROOT)}"),
                              ("medium-replay", replay, f"the replay of {medium_dir.relative_to(ROOT)}"),
                              ("medium-expert", medium + expert, "medium + expert")):
        dataset_id = f"wm/{args.task}-{name}-v0"
        if not (args.root / dataset_id).exists():
            offline.write(dataset_id, eps, env=task["env"], observation_space=env.observation_space,
                          action_space=env.action_space, root=args.root,
                          algorithm=f"wm {task['learner'].lower()} (bench.offline_data)",
                          description=f"{task['env']} {name} (D4RL recipe): {source}", ref_min_score=ref_min,
                          ref_max_score=ref_max)
        data = offline.episodes(offline.load(args.root / dataset_id))
        made[name] = {"id": dataset_id, "source": source, **stats(data)}
        print(name, made[name], flush=True)
    runs = {name: {"final_eval": read_run(d)["summary"].get("eval/return_mean"), "steps": read_run(d)["summary"]["steps"],
                   "cpu_seconds": rec.get("cpu_seconds")}
            for name, d, rec in (("expert", expert_dir, expert_rec), ("medium", medium_dir, medium_rec))}
    path = write_results(f"offline_datasets_{args.task}", {
        "command": f"python -m bench.offline_data --task {args.task}", "root": str(args.root),
        "medium_stop": stop, "ref_min_score": round(ref_min, 2), "ref_max_score": ref_max, "policies": runs,
        "datasets": made})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
