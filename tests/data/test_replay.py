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


def test_all_transitions_returns_every_transition_once_and_skips_resets():
    obs_space, act_space = gym.spaces.Box(-10, 10, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)
    r = Replay(8, 2, obs_space, act_space)  # 4 rows per env: wraps around
    for t in range(7):
        first = np.array([t in (0, 3), t == 0])
        r.add(np.arange(2), obs=np.array([[t], [10 + t]], np.float32), action=np.zeros((2, 1), np.float32),
              reward=np.array([t, 10 + t], np.float32), is_first=first, is_last=np.zeros(2, bool),
              is_terminal=np.zeros(2, bool))
    b = r.all_transitions()
    pairs = sorted(zip(b["obs"][:, 0].tolist(), b["next_obs"][:, 0].tolist()))
    # env 0 holds rows 3..6 (3 is a reset): 3->4, 4->5, 5->6; env 1 holds 13..16: three transitions
    assert pairs == [(3, 4), (4, 5), (5, 6), (13, 14), (14, 15), (15, 16)]
    assert (b["reward"].numpy() == b["next_obs"][:, 0].numpy()).all()


def rare_terminals(replay: Replay, rows: int, ends: tuple[int, ...]) -> None:
    """One env, obs = row number, one long episode with terminals only at the rows in ``ends``."""
    for n in range(rows):
        replay.add(np.arange(1), obs=np.array([[n]], float), action=np.zeros(1, np.int64), reward=np.ones(1),
                   is_first=np.array([n == 0 or n - 1 in ends]), is_last=np.array([n in ends]),
                   is_terminal=np.array([n in ends]))


@pytest.mark.parametrize("seed", range(3))
def test_terminal_share_puts_rare_terminals_into_that_share_of_the_windows(seed):
    replay = Replay(600, 1, OBS, ACT, seed=seed)  # a ring of 600 rows holding the newest of 1,000
    rare_terminals(replay, 1000, ends=(150, 420, 700, 998))  # 150 was overwritten
    places = []
    for _ in range(20):
        s = replay.sample_sequences(16, 32, terminal_share=0.25)
        obs = s["obs"][..., 0].long()
        assert (obs[:, 1:] - obs[:, :-1] == 1).all() and obs.min() >= 400  # real windows of held rows
        assert s["is_terminal"][:4].any(1).all()  # round(0.25 x 16) windows hold a terminal
        assert set(obs[:4][s["is_terminal"][:4]].tolist()) <= {420, 700, 998}
        places += s["is_terminal"][:4].float().argmax(1).tolist()
    assert len(set(places)) > 10  # the terminal is not always at one place in its window
    # the default draws exactly what it drew before the option existed (no extra random numbers)
    a, b = Replay(600, 1, OBS, ACT, seed=seed), Replay(600, 1, OBS, ACT, seed=seed)
    for r in (a, b):
        rare_terminals(r, 1000, ends=(150, 420, 700, 998))
    assert (a.sample_sequences(16, 32)["obs"] == b.sample_sequences(16, 32, terminal_share=0.0)["obs"]).all()
    assert a.sample_sequences(512, 32)["is_terminal"].any(1).float().mean() < 0.22  # uniform: ~3 x 32 / 600


def test_terminal_share_without_terminals_draws_uniformly():
    replay = Replay(600, 1, OBS, ACT, seed=0)
    rare_terminals(replay, 300, ends=())
    s = replay.sample_sequences(16, 32, terminal_share=0.5)
    assert s["obs"].shape == (16, 32, 1) and not s["is_terminal"].any()
