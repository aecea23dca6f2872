"""data=physics_frames: n-body trajectories (wm/data/nbody.py) rendered to small RGB frames, for pixel world
models: C-SWM's 3-body physics (Kipf et al. 2020; model=cswm, wm/models/cswm.py) and frame-level video
prediction (model=convlstm).

Simulation: the states are exactly those of ``data=nbody`` with the same settings and seed (the simulator
and its initial conditions are reused, not copied): ``train`` episodes from its training split and ``test``
episodes from its test split of the same body count, each cut to ``length`` steps (``length + 1`` frames,
one every ``dt``). The defaults are 3-body softened gravity recorded every dt = 0.2 (20 leapfrog substeps):
a body moves 1.25 px per frame (median; 90% below 2.3 px) and about 9 px over 10 frames.

Rendering: the frame shows the square [-view, view]^2 of the plane, so the scale is fixed (size / (2 view)
px per length unit; the centre of mass stays at the origin, where the simulator puts it). A body at (x, y)
sits at pixel coordinates column = (x + view) * scale, row = (view - y) * scale (y points up, rows down;
pixel j spans [j, j + 1)). Each body is a disc of ``radius`` px in its own colour (``PALETTE``: red, green,
blue first) on black, anti-aliased by coverage (alpha = clip(radius + 1/2 - distance to the pixel centre, 0,
1)) so sub-pixel motion shows, and painted in body order (a later body covers an earlier one). A centre that
would put part of the disc out of view is clipped to [radius, size - radius] on each axis: the disc stays
whole and in view, pressed against the border. At the defaults 0.2% of body-frames are clipped (2% of
episodes hold one); ``clipped`` in each split marks them, and ``centre`` holds the rendered (clipped) pixel
centres beside the true states.

Each split ("train", "test") is a dict of arrays, N episodes, T = length + 1 frames, n bodies:
    frames (N, T, 3, size, size) uint8, centre (N, T, n, 2) float32 (column, row in pixels), clipped (N, T, n)
    bool, pos and vel (N, T, n, 2) float32, mass (N, n) float32, edges (N, n, n) float32 (data=nbody's interaction
    graph), energy (N, T) float64.

Two ways to read it:
- C-SWM's observations stack two consecutive frames so that velocity is visible: obs_t = (frame_t,
  frame_t+1) as (2 * 3, size, size) uint8. ``transition_batch`` draws training pairs (obs_t, obs_t+1);
  ``pairs(k)`` gives every test episode's (obs_0, obs_k), the k-step ranking task. No actions: the scene
  evolves on its own.
- ConvLSTM's video contract (as wm/data/moving_mnist.py): ``train_batch(step, batch_size)`` ->
  dict(frames=(B, context + horizon, 3, size, size) uint8), a window at a random training episode and start,
  and ``test_batches(batch_size)``: the first context + horizon frames of every test episode. The defaults,
  context 2 and horizon 10, give ConvLSTM what C-SWM's obs_0 holds and ask for what obs_1 .. obs_10 hold.

Bouncing balls (``system=balls``, Sutskever et al. 2009's scenes, used by KVAE and many state-space papers):
instead of data=nbody's force laws, ``bodies`` equal discs of ``radius`` px move in straight lines inside the
view, reflect off its walls and collide elastically with each other (equal masses: the velocity components along
the line of centres are exchanged when two discs touch while approaching), ``substeps`` steps per frame.
Kinetic energy is conserved exactly, momentum is not (the walls); ``speed`` is every disc's initial speed
(length units per unit time, random directions), start positions are uniform without overlap. No disc is ever
clipped. ``energy`` is the kinetic energy, ``mass`` ones and ``edges`` zeros (no forces act at a distance).

Everything depends on the run seed only (as data=nbody); frames are rendered at build time, not cached on
disk (the presets' 3,000 episodes of 12 frames take about 4 s and 270 MB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from wm.config import check_tree, param, require
from wm.core.seeds import BALLS_DATA, WINDOW_STREAM
from wm.data.nbody import NBody

# one RGB colour per body, in [0, 1]; bodies beyond the first three get the mixed colours
PALETTE = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0.5, 0]],
                   np.float32)
RENDER_CHUNK = 512  # frames rendered at once (bounds the (chunk, n, size, size) distance array)


def render(centre: np.ndarray, size: int, radius: float) -> np.ndarray:
    """Discs at pixel centres (..., n, 2) (column, row) -> frames (..., 3, size, size) uint8, body i in
    ``PALETTE[i]``, later bodies painted over earlier ones."""
    lead, n = centre.shape[:-2], centre.shape[-2]
    flat = centre.reshape(-1, n, 2).astype(np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    out = np.empty((len(flat), 3, size, size), np.uint8)
    for s in range(0, len(flat), RENDER_CHUNK):
        c = flat[s: s + RENDER_CHUNK]
        dist = np.sqrt((grid[None, None, None, :] - c[..., 0, None, None]) ** 2
                       + (grid[None, None, :, None] - c[..., 1, None, None]) ** 2)  # (chunk, n, rows, columns)
        alpha = np.clip(radius + 0.5 - dist, 0, 1)
        img = np.zeros((len(c), 3, size, size), np.float32)
        for i in range(n):
            a = alpha[:, i, None]
            img = img * (1 - a) + PALETTE[i, None, :, None, None] * a
        out[s: s + RENDER_CHUNK] = np.round(img * 255).astype(np.uint8)
    return out.reshape(*lead, 3, size, size)


def bouncing_balls(rngs: list[np.random.Generator], n: int, radius: float, box: float, speed: float, steps: int,
                   dt: float, substeps: int) -> dict[str, np.ndarray]:
    """Equal discs of ``radius`` in [-box, box]^2, elastic walls and collisions (module docstring), one generator
    per episode: pos and vel (B, steps + 1, n, 2) float32, energy (B, steps + 1) float64 (kinetic, unit masses)."""
    lo, hi = -box + radius, box - radius
    pos = np.empty((len(rngs), n, 2))
    for b, g in enumerate(rngs):  # uniform starts, redrawn until no two discs overlap
        while True:
            p = g.uniform(lo, hi, (n, 2))
            d = np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(n) * 4 * radius
            if d.min() > 2 * radius:
                break
        pos[b] = p
    angle = np.stack([g.uniform(0, 2 * np.pi, n) for g in rngs])
    vel = speed * np.stack([np.cos(angle), np.sin(angle)], -1)
    h = dt / substeps
    xs, vs = [pos.copy()], [vel.copy()]
    for _ in range(steps):
        for _ in range(substeps):
            pos = pos + h * vel
            for edge, sign in ((lo, 1), (hi, -1)):  # reflect off the walls
                out = sign * (pos - edge) < 0
                pos = np.where(out, 2 * edge - pos, pos)
                vel = np.where(out, -vel, vel)
            for i in range(n):
                for j in range(i + 1, n):
                    d = pos[:, j] - pos[:, i]
                    dist = np.linalg.norm(d, axis=-1, keepdims=True)
                    normal = d / np.maximum(dist, 1e-12)
                    closing = ((vel[:, i] - vel[:, j]) * normal).sum(-1, keepdims=True)
                    hit = (dist < 2 * radius) & (closing > 0)
                    exchange = np.where(hit, closing, 0.0) * normal
                    vel[:, i] -= exchange
                    vel[:, j] += exchange
        xs.append(pos.copy())
        vs.append(vel.copy())
    xs, vs = np.stack(xs, 1), np.stack(vs, 1)
    return {"pos": xs.astype(np.float32), "vel": vs.astype(np.float32), "energy": 0.5 * (vs**2).sum((-1, -2))}


class PhysicsFrames:
    """data=physics_frames: the splits of the module docstring, C-SWM's transition pairs and ConvLSTM's
    video batches."""

    @dataclass
    class Config:
        name: str = param("physics_frames", free="the option's name")
        system: str = param("gravity", choices=("gravity", "spring", "balls"))  # balls: bouncing balls
        bodies: int = param(3, ge=2, le=len(PALETTE))  # one colour each
        train: int = param(5000, gt=0)  # training episodes (C-SWM: 5,000)
        test: int = param(1000, gt=0)  # test episodes: C-SWM's ranking set (its size sets Hits@1's chance level)
        length: int = param(11, ge=2)  # steps per episode: length + 1 frames (C-SWM: 12 frames)
        context: int = param(2, gt=0)  # ConvLSTM: frames given
        horizon: int = param(10, gt=0)  # ConvLSTM: frames predicted
        size: int = param(50, ge=8)  # frames are size x size (C-SWM: 50)
        radius: float = param(3.0, gt=0)  # disc radius in pixels
        view: float = param(3.0, gt=0)  # the frame shows [-view, view]^2 of the plane
        dt: float = param(0.2, gt=0)  # time between frames
        substeps: int = param(20, gt=0)  # leapfrog steps per dt
        strength: float = param(1.0, gt=0)  # G (gravity) or the spring stiffness k
        softening: float = param(0.2, gt=0)  # gravity's eps; unused by springs
        edge_prob: float = param(1.0, gt=0, le=1)  # spring: probability that a pair is joined (gravity: all)
        mass_min: float = param(0.5, gt=0)
        mass_max: float = param(1.5, gt=0)
        scale: float = param(1.0, gt=0)  # length scale of the initial positions (data=nbody's)
        speed: float = param(1.0, gt=0)  # system=balls: every disc's initial speed (length units per unit time)

        def check(self) -> None:
            require(self.context + self.horizon <= self.length + 1, "horizon",
                    f"context + horizon = {self.context + self.horizon} frames must fit in an episode's "
                    f"length + 1 = {self.length + 1} frames (raise data.length)")
            require(2 * self.radius < self.size, "radius", f"a disc of radius {self.radius} does not fit in "
                                                           f"{self.size} x {self.size} frames")
            require(self.mass_max >= self.mass_min, "mass_max", f"must be >= mass_min={self.mass_min} "
                                                                f"(got {self.mass_max})")
            require(self.system == "spring" or self.edge_prob == 1, "edge_prob",
                    "gravity acts between every pair: edge_prob < 1 is for system=spring")

    channels = 3  # per frame; an observation of C-SWM stacks two frames (6 channels)
    action_dim = 0

    def __init__(self, cfg: PhysicsFrames.Config, seed: int = 0):
        check_tree(cfg, "data")  # also when built directly, not through typed()
        self.cfg, self.seed = cfg, int(seed)
        self.context, self.horizon, self.size = cfg.context, cfg.horizon, cfg.size
        self.length = cfg.length
        self.pixels_per_unit = cfg.size / (2 * cfg.view)
        self.dt = cfg.dt
        if cfg.system == "balls":
            self.physics = None  # no force law: bouncing_balls simulates
            self.splits = {split: self._render(self._balls(i, episodes))
                           for i, (split, episodes) in enumerate((("train", cfg.train), ("test", cfg.test)))}
            return
        sim_keys = ("system", "bodies", "train", "test", "length", "dt", "substeps", "strength", "softening",
                    "edge_prob", "mass_min", "mass_max", "scale")
        # data=nbody's test split records at least 100 steps (its metrics roll out 100): the episodes keep the first
        # length of them
        sim = NBody(NBody.Config(**{k: getattr(cfg, k) for k in sim_keys}, test_bodies=[cfg.bodies],
                                 test_length=max(100, cfg.length)), seed=self.seed)
        self.physics = sim.physics
        self.splits = {"train": self._render(sim.splits["train"]),
                       "test": self._render(sim.splits[f"test_{cfg.bodies}"])}

    def _balls(self, index: int, episodes: int) -> dict[str, np.ndarray]:
        c, n = self.cfg, self.cfg.bodies
        rngs = [np.random.default_rng([self.seed, BALLS_DATA, index, e]) for e in range(episodes)]
        states = bouncing_balls(rngs, n, c.radius / self.pixels_per_unit, c.view, c.speed, c.length, c.dt,
                                c.substeps)
        return {**states, "mass": np.ones((episodes, n), np.float32), "edges": np.zeros((episodes, n, n), np.float32)}

    def _render(self, states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        T = self.length + 1
        pos = states["pos"][:, :T]
        c = self.cfg
        centre = np.stack([pos[..., 0] + c.view, c.view - pos[..., 1]], -1) * self.pixels_per_unit
        kept = np.clip(centre, c.radius, c.size - c.radius)
        return {"frames": render(kept, c.size, c.radius), "centre": kept.astype(np.float32),
                "clipped": (kept != centre).any(-1), "pos": pos, "vel": states["vel"][:, :T],
                "mass": states["mass"], "edges": states["edges"], "energy": states["energy"][:, :T]}

    # ---- C-SWM: observations of two stacked frames -----------------------------------------------------------
    @staticmethod
    def stack(frames: np.ndarray) -> torch.Tensor:
        """Two consecutive frames (B, 2, 3, H, W) -> one observation (B, 6, H, W) uint8 (frame t's channels first)."""
        return torch.from_numpy(np.ascontiguousarray(frames).reshape(len(frames), -1, *frames.shape[-2:]))

    def transition_batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        """``size`` training transitions at random episodes and times t in [0, length - 2]: obs = (frame_t,
        frame_t+1), next_obs = (frame_t+1, frame_t+2), each (size, 6, H, W) uint8."""
        frames = self.splits["train"]["frames"]
        episode, t = rng.integers(0, len(frames), size), rng.integers(0, self.length - 1, size)
        window = frames[episode[:, None], t[:, None] + np.arange(3)]  # (size, 3 frames, 3, H, W)
        return {"obs": self.stack(window[:, :2]), "next_obs": self.stack(window[:, 1:])}

    def pairs(self, k: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """Every episode's first observation and the one k steps later: (obs_0, obs_k), each (N, 6, H, W) uint8
        (k <= length - 1)."""
        if not 0 <= k <= self.length - 1:
            raise ValueError(f"obs_{k} needs frame {k + 1}; episodes hold frames 0..{self.length}")
        frames = self.splits[split]["frames"]
        return self.stack(frames[:, :2]), self.stack(frames[:, k: k + 2])

    # ---- ConvLSTM: the video contract -------------------------------------------------------------------------
    def train_batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        """A training batch that depends only on (run seed, step): dict(frames=(B, context + horizon, 3, H, W)
        uint8), windows at random training episodes and starts."""
        rng = np.random.default_rng([self.seed, WINDOW_STREAM, int(step)])
        frames, T = self.splits["train"]["frames"], self.context + self.horizon
        episode, start = rng.integers(0, len(frames), batch_size), rng.integers(0, self.length + 2 - T, batch_size)
        return {"frames": torch.from_numpy(frames[episode[:, None], start[:, None] + np.arange(T)])}

    def test_batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """The first context + horizon frames of every test episode, ``batch_size`` episodes at a time."""
        frames = self.splits["test"]["frames"]
        for i in range(0, len(frames), batch_size):
            yield {"frames": torch.from_numpy(frames[i: i + batch_size, : self.context + self.horizon])}

    def __len__(self) -> int:
        return len(self.splits["test"]["frames"])
