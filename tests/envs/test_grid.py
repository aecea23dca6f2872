"""Grid worlds: the book's layouts, the wall change across episodes, and gymnasium's env checker."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import wm.envs  # noqa: F401  (registers the ids)
from wm.envs.grid import GridMaze, shortest_path

IDS = ["wm/DynaMaze-v0", "wm/BlockingMaze-v0", "wm/ShortcutMaze-v0", "wm/GridWorld-v0"]
UP, DOWN, LEFT, RIGHT = range(4)


def cells(walls):
    return {tuple(map(int, x)) for x in np.argwhere(walls)}


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("obs_type", ["index", "onehot", "coords"])
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_env_checker(env_id, obs_type, render_mode):
    env = gym.make(env_id, obs_type=obs_type, render_mode=render_mode)
    check_env(env.unwrapped, skip_render_check=render_mode is None)


def test_dyna_maze_layout_figure_8_2():
    env = gym.make("wm/DynaMaze-v0").unwrapped
    assert (env.rows, env.cols) == (6, 9)
    assert env.start == (2, 0) and env.goal == (0, 8)
    assert cells(env.walls) == {(1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7)}
    assert env.walls1 is None
    assert shortest_path(env.walls, env.start, env.goal) == 14


def test_blocking_maze_layout_and_change_at_1000_steps():
    env = gym.make("wm/BlockingMaze-v0").unwrapped
    assert env.start == (5, 3) and env.goal == (0, 8) and env.change_at == 1000
    assert cells(env.walls0) == {(3, c) for c in range(8)}  # opening on the right
    assert cells(env.walls1) == {(3, c) for c in range(1, 9)}  # opening on the left
    assert shortest_path(env.walls0, env.start, env.goal) == 10
    assert shortest_path(env.walls1, env.start, env.goal) == 16


def test_shortcut_maze_layout_and_change_at_3000_steps():
    env = gym.make("wm/ShortcutMaze-v0").unwrapped
    assert env.start == (5, 3) and env.goal == (0, 8) and env.change_at == 3000
    assert cells(env.walls0) == {(3, c) for c in range(1, 9)}
    assert cells(env.walls1) == {(3, c) for c in range(1, 8)}  # the shortcut at (3, 8)
    assert shortest_path(env.walls0, env.start, env.goal) == 16
    assert shortest_path(env.walls1, env.start, env.goal) == 10


def test_moves_walls_boundaries_and_reward():
    env = gym.make("wm/DynaMaze-v0").unwrapped
    s, info = env.reset(seed=0)
    assert s == 2 * 9 + 0 and info["pos"] == (2, 0)
    s, r, term, trunc, info = env.step(LEFT)  # boundary: stay
    assert info["pos"] == (2, 0) and r == 0.0 and not term and not trunc
    env.step(RIGHT)
    _, _, _, _, info = env.step(RIGHT)  # wall at (2, 2): stay
    assert info["pos"] == (2, 1)
    env.pos = (1, 8)
    s, r, term, _, info = env.step(UP)
    assert info["pos"] == (0, 8) and s == 8 and r == 1.0 and term


def test_wall_change_counts_total_steps_across_episodes_and_state_dict():
    env = gym.make("wm/ShortcutMaze-v0", change_at=5).unwrapped
    env.reset(seed=0)
    for _ in range(3):
        env.step(UP)
    env.reset()  # a new episode does not reset the counter
    assert env.total_steps == 3 and not env.changed
    env.step(UP)
    env.step(UP)
    assert env.changed and (3, 8) not in cells(env.walls)
    state = env.state_dict()
    fresh = gym.make("wm/ShortcutMaze-v0", change_at=5).unwrapped
    assert not fresh.changed
    fresh.load_state_dict(state)
    assert fresh.changed and fresh.total_steps == 5


def test_blocking_maze_path_is_blocked_after_change():
    env = gym.make("wm/BlockingMaze-v0", change_at=4).unwrapped
    env.reset(seed=0)
    for a in (RIGHT, RIGHT, RIGHT, RIGHT):  # to (5, 7); 4 steps: the change applies from now on
        env.step(a)
    env.pos = (4, 8)
    _, _, _, _, info = env.step(UP)
    assert info["pos"] == (4, 8)  # (3, 8) is a wall now


def test_gridworld_config_and_slip():
    env = gym.make("wm/GridWorld-v0", height=3, width=4, walls=[[1, 1]], start=[2, 0], goal=[0, 3],
                   slip=1.0).unwrapped
    assert (env.rows, env.cols) == (3, 4) and env.start == (2, 0) and env.goal == (0, 3)
    assert cells(env.walls) == {(1, 1)}
    env.reset(seed=1)
    moves = set()
    for _ in range(200):  # slip=1: every action is replaced by a random one
        before = env.pos
        env.step(UP)
        moves.add((env.pos[0] - before[0], env.pos[1] - before[1]))
        if env.pos == env.goal:
            env.reset()
    assert {(0, 1), (0, -1)} & moves and (1, 0) in moves
    with pytest.raises(ValueError):
        gym.make("wm/GridWorld-v0", height=2, width=2, walls=[[5, 5]])
    with pytest.raises(ValueError):
        GridMaze(layout=["S.", ".."])  # no goal


def test_seeded_episodes_are_reproducible_with_slip():
    def trajectory(seed):
        env = gym.make("wm/GridWorld-v0", slip=0.5).unwrapped
        env.reset(seed=seed)
        return [env.step(RIGHT)[0] for _ in range(30)]

    assert trajectory(3) == trajectory(3)
    assert trajectory(3) != trajectory(4)
