"""Replay: transitions never cross a reset, sequences keep time order, ring buffers wrap, state round-trips."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from wm.data.replay import Replay

OBS = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
ACT = gym.spaces.Discrete(3)


def fill(replay: Replay, rows: int) -> None:
    """Two envs; row n of env e has obs 1000 * e + n; rows 0, 5, 10, ... are resets and 4, 9, ... end episodes."""
    for n in range(rows):
        first, last = n % 5 == 0, n % 5 == 4
        replay.add(np.arange(2), obs=np.array([[n], [1000 + n]], float), action=np.full(2, n % 3),
                   reward=np.full(2, 0.0 if first else float(n)), is_first=np.full(2, first),
                   is_last=np.full(2, last), is_terminal=np.full(2, last))


def test_transitions_are_consecutive_and_never_cross_a_reset():
    replay = Replay(1000, 2, OBS, ACT, seed=0)
    fill(replay, 50)
    b = replay.sample_transitions(512)
    assert (b["next_obs"] - b["obs"] == 1).all()  # consecutive rows of one env
    # a reset row (obs number = 5, 10, 15, ...) is never the target of a transition
    assert not (b["next_obs"][:, 0].long() % 1000 % 5 == 0).any()
    assert ((b["next_obs"][:, 0].long() % 1000 % 5 == 4) == b["terminal"]).all()
    assert (b["reward"] == b["next_obs"][:, 0] % 1000).all()


def test_sequences_keep_time_order_and_mark_resets():
    replay = Replay(1000, 2, OBS, ACT, seed=0)
    fill(replay, 50)
    s = replay.sample_sequences(16, 8)
    assert s["obs"].shape == (16, 8, 1) and s["is_first"].shape == (16, 8)
    assert (s["obs"][:, 1:] - s["obs"][:, :-1] == 1).all()
    assert (s["is_first"] == (s["obs"][..., 0].long() % 1000 % 5 == 0)).all()


def test_ring_buffer_wraps_and_keeps_only_the_newest_rows():
    replay = Replay(40, 2, OBS, ACT, seed=0)  # 20 rows per env
    fill(replay, 200)
    assert len(replay) == 40
    b = replay.sample_transitions(256)
    assert (b["next_obs"] - b["obs"] == 1).all()
    assert b["obs"][:, 0].remainder(1000).min() >= replay.count.min() - 20


def test_state_dict_round_trip_continues_identically():
    a = Replay(1000, 2, OBS, ACT, seed=3)
    fill(a, 30)
    b = Replay(1000, 2, OBS, ACT, seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        xa, xb = a.sample_sequences(8, 5), b.sample_sequences(8, 5)
        assert all((xa[k] == xb[k]).all() for k in xa)


def test_too_few_rows_is_a_clear_error():
    replay = Replay(100, 2, OBS, ACT)
    with pytest.raises(ValueError, match="too few rows"):
        replay.sample_sequences(4, 10)
