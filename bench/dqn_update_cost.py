"""Where a DQN update's CPU time goes (issue 22's peer goal: wm DQN >= 1.5x SB3's env steps/s).

    python -m bench.dqn_update_cost     -> bench/results/dqn_update_cost.json

The preset's agent (`experiment=dqn_cartpole`: 256 x 256 MLP, batch 64, double targets, fused Adam) on a replay of
10,000 CartPole-shaped rows, one torch thread. Each part is timed in blocks of 200 calls, the parts interleaved
block by block (so a change in the machine's load reaches all of them alike), as process CPU time; the figure is
the median over blocks, in ms per call:
- update: one `DQN.train_step` (sample, targets, loss, backward, clip, Adam, statistics);
- update_single_tensor_adam: the same with torch's default CPU Adam (a Python loop over tensors; SB3's);
- kernels_double / kernels_vanilla: the network work alone: the online net forward and backward on the batch and
  the forwards of the next observations (double: online and target net; vanilla, as SB3: target net only);
- sample: `Replay.sample_transitions(64)`.
"""

from __future__ import annotations

import time
from statistics import median

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from bench.common import write_results
from wm.agents.dqn import DQN
from wm.data.replay import Replay

BLOCK, BLOCKS = 200, 15


def setup(fused: bool = True) -> tuple[DQN, Replay]:
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act_space = gym.spaces.Discrete(2)
    replay = Replay(100_000, 1, obs_space, act_space)
    rng = np.random.default_rng(0)
    for i in range(10_000):
        replay.add(np.array([0]), obs=rng.normal(size=(1, 4)).astype(np.float32), action=rng.integers(2, size=1),
                   reward=np.ones(1), is_first=np.array([i % 200 == 0]), is_last=np.array([i % 200 == 199]),
                   is_terminal=np.array([False]))
    torch.manual_seed(0)
    agent = DQN(DQN.Config(lr_decay_steps=50_000), obs_space, act_space)
    if not fused:
        agent.optim = torch.optim.Adam(agent.q.parameters(), lr=agent.cfg.lr)
    agent.env_step = 5_000
    return agent, replay


def main() -> None:
    torch.set_num_threads(1)
    agent, replay = setup()
    single, _ = setup(fused=False)
    b = replay.sample_transitions(64)

    def kernels(double: bool) -> None:
        with torch.no_grad():
            agent.q_target(b["next_obs"])
            if double:
                agent.q(b["next_obs"])
        q = agent.q(b["obs"]).gather(1, b["action"].long()[:, None]).squeeze(1)
        F.smooth_l1_loss(q, torch.zeros_like(q)).backward()

    parts = {
        "update": lambda: agent.train_step(replay, 0),
        "update_single_tensor_adam": lambda: single.train_step(replay, 0),
        "kernels_double": lambda: kernels(True),
        "kernels_vanilla": lambda: kernels(False),
        "sample": lambda: replay.sample_transitions(64),
    }
    for f in parts.values():  # warm-up
        for _ in range(50):
            f()
    ms: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(BLOCKS):
        for k, f in parts.items():
            t = time.process_time()
            for _ in range(BLOCK):
                f()
            ms[k].append((time.process_time() - t) / BLOCK * 1e3)
    cost = {k: round(median(v), 3) for k, v in ms.items()}
    out = {
        "command": "python -m bench.dqn_update_cost", "threads": 1, "block": BLOCK, "blocks": BLOCKS,
        "ms_per_call_median": cost, "ms_per_call_blocks": {k: [round(x, 3) for x in v] for k, v in ms.items()},
        "share_of_update": {
            "network_kernels": round(cost["kernels_double"] / cost["update"], 3),
            "replay_sample": round(cost["sample"] / cost["update"], 3),
            "rest (loss, clip, Adam, statistics)": round(1 - (cost["kernels_double"] + cost["sample"]) / cost["update"], 3),
        },
        "fused_over_single_tensor_adam": round(cost["update"] / cost["update_single_tensor_adam"], 3),
        "vanilla_over_double_kernels": round(cost["kernels_vanilla"] / cost["kernels_double"], 3),
    }
    path = write_results("dqn_update_cost", out)
    print(path, cost, out["share_of_update"])


if __name__ == "__main__":
    main()
