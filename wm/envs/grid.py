"""Grid worlds of Sutton & Barto chapter 8 as gymnasium envs (registered in ``wm.envs``).

A layout is a list of strings, one per row (row 0 at the top): ``#`` wall, ``S`` start, ``G`` goal,
``.`` free. Actions are 0 up, 1 down, 2 left, 3 right; a move into a wall or off the grid leaves the
agent where it is. The reward is ``goal_reward`` on entering the goal (which ends the episode) and
``step_reward`` otherwise. With ``slip`` > 0 the chosen action is replaced by a uniformly random one
with that probability.

Changing mazes (Examples 8.2 and 8.3): ``change_at`` counts *total* env steps across episodes; after
that many steps the walls of ``changed_layout`` replace those of ``layout``. That counter is state that
crosses episodes, so it is exposed through ``state_dict()`` / ``load_state_dict()`` on the unwrapped env
(the checkpoint saves it). ``reset()`` never clears it.

Observations: ``obs_type="index"`` gives ``Discrete(rows*cols)`` with ``row * cols + col`` (what the
tabular agents use); ``"onehot"`` a float32 one-hot vector; ``"coords"`` float32 (row, col) scaled to [0, 1].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

# Figure 8.2 (Example 8.1): 6 rows x 9 columns, S at (2, 0), G at (0, 8).
DYNA_MAZE = (
    ".......#G",
    "..#....#.",
    "S.#....#.",
    "..#......",
    ".....#...",
    ".........",
)
# Figure 8.4 (Example 8.2): the opening on the right is closed after 1000 steps, one on the left opens.
BLOCKING_MAZE = (
    "........G",
    ".........",
    ".........",
    "########.",
    ".........",
    "...S.....",
)
BLOCKING_MAZE_AFTER = (
    "........G",
    ".........",
    ".........",
    ".########",
    ".........",
    "...S.....",
)
# Figure 8.5 (Example 8.3): a shortcut on the right opens after 3000 steps.
SHORTCUT_MAZE = BLOCKING_MAZE_AFTER
SHORTCUT_MAZE_AFTER = (
    "........G",
    ".........",
    ".........",
    ".#######.",
    ".........",
    "...S.....",
)

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right


class GridError(gym.error.Error, ValueError):
    """An invalid grid argument: a ValueError that the config validation reports as a gymnasium error."""


def parse_layout(layout: Sequence[str]) -> tuple[np.ndarray, tuple[int, int] | None, tuple[int, int] | None]:
    """Return (walls bool array, start, goal) of a layout; start/goal are None when absent."""
    rows = [str(r) for r in layout]
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise GridError("layout rows must be non-empty and of equal length")
    bad = {ch for r in rows for ch in r} - set("#SG.")
    if bad:
        raise GridError(f"layout has unknown characters {sorted(bad)}; use # S G .")
    walls = np.array([[ch == "#" for ch in r] for r in rows], dtype=bool)
    find = lambda ch: next(((i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == ch), None)
    return walls, find("S"), find("G")


def shortest_path(walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> int | None:
    """Length in steps of the shortest start->goal path (BFS), None when unreachable."""
    rows, cols = walls.shape
    dist = {start: 0}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            return dist[cell]
        for dr, dc in MOVES:
            r, c = cell[0] + dr, cell[1] + dc
            if 0 <= r < rows and 0 <= c < cols and not walls[r, c] and (r, c) not in dist:
                dist[(r, c)] = dist[cell] + 1
                queue.append((r, c))
    return None


class GridMaze(gym.Env):
    """A deterministic (or slippery) grid maze whose walls may change after ``change_at`` total steps."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(self, layout: Sequence[str] = DYNA_MAZE, changed_layout: Sequence[str] | None = None,
                 change_at: int | None = None, slip: float = 0.0, step_reward: float = 0.0,
                 goal_reward: float = 1.0, obs_type: str = "index", render_mode: str | None = None):
        self.walls0, start, goal = parse_layout(layout)
        if start is None or goal is None:
            raise GridError("layout needs one S (start) and one G (goal)")
        self.start, self.goal = start, goal
        self.walls1 = None
        if changed_layout is not None:
            self.walls1, _, _ = parse_layout(changed_layout)
            if self.walls1.shape != self.walls0.shape:
                raise GridError("changed_layout must have the same shape as layout")
            if change_at is None or change_at < 0:
                raise GridError("changed_layout needs change_at >= 0 (total env steps)")
        if not 0.0 <= slip <= 1.0:
            raise GridError(f"slip must be in [0, 1] (got {slip})")
        if obs_type not in ("index", "onehot", "coords"):
            raise GridError(f"obs_type must be index, onehot or coords (got {obs_type!r})")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise GridError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.change_at = change_at
        self.slip, self.step_reward, self.goal_reward = float(slip), float(step_reward), float(goal_reward)
        self.obs_type, self.render_mode = obs_type, render_mode
        self.rows, self.cols = self.walls0.shape
        n = self.rows * self.cols
        if obs_type == "index":
            self.observation_space = gym.spaces.Discrete(n)
        elif obs_type == "onehot":
            self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.total_steps = 0  # crosses episodes: drives the wall change
        self.pos = self.start

    # ---- state that crosses episodes --------------------------------------------------------------
    @property
    def walls(self) -> np.ndarray:
        if self.walls1 is not None and self.total_steps >= self.change_at:
            return self.walls1
        return self.walls0

    @property
    def changed(self) -> bool:
        return self.walls1 is not None and self.total_steps >= self.change_at

    def state_dict(self) -> dict[str, Any]:
        """The step counter that crosses episodes, and the position (so a resume that replays the
        episode's actions before calling ``load_state_dict`` ends where the run was, walls moved or not)."""
        return {"total_steps": int(self.total_steps), "pos": [int(self.pos[0]), int(self.pos[1])]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total_steps = int(state["total_steps"])
        if "pos" in state:
            self.pos = (int(state["pos"][0]), int(state["pos"][1]))

    # ---- gymnasium API ----------------------------------------------------------------------------
    def state_index(self, pos: tuple[int, int]) -> int:
        return pos[0] * self.cols + pos[1]

    def _obs(self):
        if self.obs_type == "index":
            return self.state_index(self.pos)
        if self.obs_type == "onehot":
            v = np.zeros(self.rows * self.cols, np.float32)
            v[self.state_index(self.pos)] = 1.0
            return v
        return np.array([self.pos[0] / max(1, self.rows - 1), self.pos[1] / max(1, self.cols - 1)], np.float32)

    def _info(self) -> dict[str, Any]:
        # total_steps is not reported here: info must be a function of (seed, actions) for the env checker
        return {"pos": self.pos}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = self.start
        return self._obs(), self._info()

    def step(self, action):
        a = int(action)
        if not 0 <= a < 4:
            raise GridError(f"action must be in 0..3 (got {action!r})")
        if self.slip > 0.0 and self.np_random.random() < self.slip:
            a = int(self.np_random.integers(4))
        walls = self.walls
        r, c = self.pos[0] + MOVES[a][0], self.pos[1] + MOVES[a][1]
        if 0 <= r < self.rows and 0 <= c < self.cols and not walls[r, c]:
            self.pos = (r, c)
        self.total_steps += 1
        terminated = self.pos == self.goal
        reward = self.goal_reward if terminated else self.step_reward
        return self._obs(), reward, terminated, False, self._info()

    def render(self):
        if self.render_mode == "ansi":
            return self._ansi()
        if self.render_mode == "rgb_array":
            return self._rgb()
        return None

    def _ansi(self) -> str:
        walls = self.walls
        lines = []
        for i in range(self.rows):
            row = ""
            for j in range(self.cols):
                cell = (i, j)
                row += "A" if cell == self.pos else "G" if cell == self.goal else "S" if cell == self.start \
                    else "#" if walls[i, j] else "."
            lines.append(row)
        return "\n".join(lines) + "\n"

    def _rgb(self, scale: int = 16) -> np.ndarray:
        img = np.full((self.rows, self.cols, 3), 255, np.uint8)
        img[self.walls] = (60, 60, 60)
        img[self.goal] = (40, 180, 40)
        img[self.pos] = (220, 40, 40)
        return np.kron(img, np.ones((scale, scale, 1), np.uint8))


def DynaMaze(**kwargs: Any) -> GridMaze:
    """Example 8.1 / Figure 8.2: the 9x6 Dyna maze."""
    return GridMaze(layout=DYNA_MAZE, **kwargs)


def BlockingMaze(change_at: int = 1000, **kwargs: Any) -> GridMaze:
    """Example 8.2 / Figure 8.4: the right-hand opening closes and a left one opens after 1000 steps."""
    return GridMaze(layout=BLOCKING_MAZE, changed_layout=BLOCKING_MAZE_AFTER, change_at=change_at, **kwargs)


def ShortcutMaze(change_at: int = 3000, **kwargs: Any) -> GridMaze:
    """Example 8.3 / Figure 8.5: a shortcut opens on the right after 3000 steps."""
    return GridMaze(layout=SHORTCUT_MAZE, changed_layout=SHORTCUT_MAZE_AFTER, change_at=change_at, **kwargs)


def GridWorld(height: int = 5, width: int = 5, walls: Sequence[Sequence[int]] = (),
              start: Sequence[int] = (0, 0), goal: Sequence[int] | None = None, **kwargs: Any) -> GridMaze:
    """A configurable grid: ``walls`` is a list of [row, col]; the goal defaults to the far corner."""
    if height < 1 or width < 1 or height * width < 2:
        raise GridError(f"grid needs at least 2 cells (got {height}x{width})")
    goal = (height - 1, width - 1) if goal is None else goal
    grid = [["."] * width for _ in range(height)]
    for cell in walls:
        r, c = int(cell[0]), int(cell[1])
        if not (0 <= r < height and 0 <= c < width):
            raise GridError(f"wall {list(cell)} is outside the {height}x{width} grid")
        grid[r][c] = "#"
    for ch, (r, c) in (("S", start), ("G", goal)):
        if not (0 <= r < height and 0 <= c < width):
            raise GridError(f"{'start' if ch == 'S' else 'goal'} {[r, c]} is outside the {height}x{width} grid")
        if grid[r][c] != ".":
            raise GridError(f"start and goal must be distinct free cells (got {[r, c]})")
        grid[r][c] = ch
    return GridMaze(layout=["".join(row) for row in grid], **kwargs)


ENV_IDS = {
    "wm/DynaMaze-v0": "wm.envs.grid:DynaMaze",
    "wm/BlockingMaze-v0": "wm.envs.grid:BlockingMaze",
    "wm/ShortcutMaze-v0": "wm.envs.grid:ShortcutMaze",
    "wm/GridWorld-v0": "wm.envs.grid:GridWorld",
}


def register_envs() -> None:
    """Register the grid worlds with gymnasium (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
