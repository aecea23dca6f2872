"""Evaluation runs in the world the agent trains in: a maze whose walls moved for the training envs has
moved for the eval envs too."""

from types import SimpleNamespace

import gymnasium as gym

import wm.envs  # noqa: F401  (registers the grid envs)
from wm.loops.online import OnlineLoop


def vec(n: int) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([lambda: gym.make("wm/BlockingMaze-v0", change_at=5) for _ in range(n)])


def test_eval_envs_take_the_training_envs_wall_state():
    train, evaluate = vec(1), vec(2)
    train.reset(seed=0)
    for _ in range(5):
        train.step([0])
    assert train.envs[0].unwrapped.changed
    assert not any(e.unwrapped.changed for e in evaluate.envs)
    OnlineLoop._sync_eval_world(SimpleNamespace(envs=train, eval_envs=evaluate))
    evaluate.reset(seed=1)
    for e in evaluate.envs:
        assert e.unwrapped.changed and e.unwrapped.pos == e.unwrapped.start

