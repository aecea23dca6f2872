"""Offline RL datasets in Minari's on-disk format, made from any run and read from any Minari directory.

A dataset is ``<root>/<namespace>/<name>-v<k>/data/{main_data.hdf5, metadata.json}`` (Minari's HDF5 layout), with
root ``MINARI_DATASETS_PATH`` (Minari's default: ``~/.minari/datasets``), so datasets made here are read by
``minari.load_dataset`` and real D4RL/Minari datasets copied into the root are read here. An episode of T steps
holds observations (T+1, ...), actions (T, ...), rewards, terminations and truncations (T,).

    python -m wm.data.offline export <run dir> <namespace/name-v0> [--root DIR]   # the run's replay
    python -m wm.data.offline info <namespace/name-v0 | dataset dir>
    python train.py data=minari data.source=<id | dir> agent=bc model=none       # train on one (MinariData)

From a replay (wm/data/replay.py, the DreamerV3 row format): each env's rows in the order they were written; an
episode runs from an ``is_first`` row to an ``is_last`` one (terminated if ``is_terminal``, else truncated). The
episode still running when the replay was saved is kept as truncated at its last row (the run stopped it, not
the MDP); rows before a ring buffer's first reset row (an episode whose start was overwritten) are dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from wm.config import param
from wm.errors import ConfigError

KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def episodes_from_rows(data: dict[str, np.ndarray], count: np.ndarray, size: int) -> list[dict[str, np.ndarray]]:
    """Whole episodes from per-env ring buffers (``Replay.data``, ``Replay.count``, ``Replay.size``), env by env."""
    episodes = []
    for e in range(len(count)):
        rows = np.arange(max(0, int(count[e]) - size), int(count[e])) % size
        firsts = np.flatnonzero(data["is_first"][e, rows])
        for i, start in enumerate(firsts):
            end = firsts[i + 1] if i + 1 < len(firsts) else len(rows)  # the next reset row, or the newest row
            ep = rows[start:end]
            last = np.flatnonzero(data["is_last"][e, ep])
            ep = ep[: last[0] + 1] if len(last) else ep
            if len(ep) < 2:  # a reset row with no step after it
                continue
            steps = ep[1:]
            terminal = data["is_terminal"][e, steps].astype(bool)
            truncated = ~terminal & (data["is_last"][e, steps].astype(bool))
            truncated[-1] |= not terminal[-1]  # ended by the run (or by a time limit), not by the MDP
            episodes.append({"observations": data["obs"][e, ep], "actions": data["action"][e, steps],
                             "rewards": data["reward"][e, steps].astype(np.float64),
                             "terminations": terminal, "truncations": truncated})
    return episodes


def rollout(act, env: gym.Env, steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Whole episodes of a policy until at least ``steps`` env steps (the last episode runs to its end), each
    from ``episode_seed(seed, DATASET, k)``. ``act(obs (1, ...), state, is_first (1,)) -> (actions (1, ...),
    state)``: an agent's greedy ``act`` with ``explore=False`` bound."""
    from wm.core.seeds import DATASET, episode_seed

    out, total = [], 0
    while total < steps:
        obs, _ = env.reset(seed=episode_seed(seed, DATASET, len(out)))
        ep = {k: [] for k in KEYS}
        ep["observations"].append(obs)
        state, first = None, np.ones(1, bool)
        while True:
            action, state = act(obs[None], state, first)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            first = np.zeros(1, bool)
            for key, value in zip(KEYS, (obs, action[0], reward, terminated, truncated)):
                ep[key].append(value)
            if terminated or truncated:
                break
        out.append({k: np.asarray(v) for k, v in ep.items()})
        total += len(ep["rewards"])
    return out


def episodes_from_replay(replay) -> list[dict[str, np.ndarray]]:
    return episodes_from_rows(replay.data, replay.count, replay.size)


@contextlib.contextmanager
def datasets_root(root: Path | str | None) -> Iterator[Path]:
    """MINARI_DATASETS_PATH set to ``root`` (if given) while Minari reads or writes."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
    finally:
        if root is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH")
            else:
                os.environ["MINARI_DATASETS_PATH"] = old


def write(dataset_id: str, episodes: list[dict[str, np.ndarray]], env: str | gym.envs.registration.EnvSpec,
          observation_space: gym.Space, action_space: gym.Space, root: Path | str | None = None,
          algorithm: str | None = None, description: str | None = None,
          ref_min_score: float | None = None, ref_max_score: float | None = None):
    """Write ``episodes`` as Minari dataset ``dataset_id`` under ``root``; an existing one is refused."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    if not episodes:
        raise ConfigError(f"{dataset_id}: no complete episode to write")
    with datasets_root(root) as where:
        if (where / dataset_id).exists():
            raise ConfigError(f"dataset {dataset_id} already exists in {where}; remove it or choose another id")
        buffers = [EpisodeBuffer(id=i, **{k: ep[k] for k in KEYS}) for i, ep in enumerate(episodes)]
        return minari.create_dataset_from_buffers(
            dataset_id, buffer=buffers, env=env, eval_env=env, observation_space=observation_space, action_space=action_space,
            algorithm_name=algorithm, description=description, ref_min_score=ref_min_score,
            ref_max_score=ref_max_score, data_format="hdf5", author="wm")


def load(source: str | Path):
    """A Minari dataset: a directory (the dataset's, or its ``data`` folder), or an id under MINARI_DATASETS_PATH.
    Missing or malformed: one ConfigError line."""
    from minari.dataset.minari_dataset import MinariDataset

    path = Path(source)
    if not path.is_dir():
        with datasets_root(None) as where:
            path = where / str(source)
        if not path.is_dir():
            raise ConfigError(f"no Minari dataset {source!r}: not a directory, nor an id under {where} "
                              f"(set MINARI_DATASETS_PATH, or pass the dataset's directory)")
    data = path / "data" if (path / "data").is_dir() else path
    if not (data / "metadata.json").is_file():
        raise ConfigError(f"{data}: not a Minari dataset (no metadata.json)")
    try:
        return MinariDataset(data)
    except Exception as e:  # h5py, JSON and Minari's own errors alike: the file is not what it claims
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{data}: malformed Minari dataset ({why[:200]})") from None


def episodes(dataset) -> list[dict[str, np.ndarray]]:
    """Every episode of a Minari dataset as numpy arrays (KEYS)."""
    return [{k: np.asarray(getattr(ep, k)) for k in KEYS} for ep in dataset.iterate_episodes()]


class MinariData:
    """``data=minari``: a Minari dataset for the offline agents (agent=bc, agent=decision_transformer), trained
    by the supervised loop and evaluated in the env the dataset records (its env spec). Scores are normalised
    with the dataset's ``ref_min_score`` / ``ref_max_score`` when it has them (100 = expert, 0 = random)."""

    offline = True  # what the offline agents check for

    @dataclass
    class Config:
        name: str = param("minari", free="the option's name")
        source: Optional[str] = param(None, free="a dataset id or directory, checked by loading it")

    @classmethod
    def refuse(cls, plan) -> str | None:
        if plan.data.source is None:
            return "data=minari needs data.source=<a dataset id under MINARI_DATASETS_PATH, or its directory>"
        if not getattr(plan.agent_cls, "offline", False):
            return "data=minari feeds the offline agents: use model=none and agent=bc or agent=decision_transformer"
        load(plan.data.source)  # missing or malformed: its own one-line ConfigError
        return None

    def __init__(self, cfg: Config, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.dataset = load(cfg.source)
        self.episodes = episodes(self.dataset)
        meta = self.dataset.storage.metadata
        self.ref_min, self.ref_max = meta.get("ref_min_score"), meta.get("ref_max_score")
        self.observation_space, self.action_space = self.dataset.observation_space, self.dataset.action_space
        self.env_spec = self.dataset.spec.env_spec

    def make_env(self) -> gym.Env:
        """The env the data came from (for evaluation); refused in one line if the dataset records none."""
        if self.env_spec is None:
            raise ConfigError(f"{self.cfg.source}: the dataset records no env to evaluate in")
        return gym.make(self.env_spec)

    def normalized(self, ret: float) -> float | None:
        if self.ref_min is None or self.ref_max is None or self.ref_max == self.ref_min:
            return None
        return 100.0 * (ret - self.ref_min) / (self.ref_max - self.ref_min)


# ---- from a run dir ------------------------------------------------------------------------------------------
def export_run(run_dir: Path, dataset_id: str, root: Path | str | None = None) -> Any:
    """The replay in ``run_dir``'s latest checkpoint as a Minari dataset (the env and spaces from its config)."""
    from omegaconf import OmegaConf

    from wm import checkpoint
    from wm.config import typed
    from wm.envs.factory import EnvConfig, make_env

    run_dir = Path(run_dir)
    if not checkpoint.exists(run_dir):
        raise ConfigError(f"{run_dir}: no checkpoint to export (runs of the online loop checkpoint their replay)")
    state = checkpoint.load(run_dir)
    if "replay" not in state:
        raise ConfigError(f"{run_dir}: its checkpoint holds no replay (not a run of the online loop)")
    config = OmegaConf.load(run_dir / "config.yaml")
    env_cfg = typed(EnvConfig, config.env, "env")
    env = make_env(env_cfg)
    rep = state["replay"]
    # the checkpoint keeps the rows written so far: all of them until the ring wraps, then the whole ring
    eps = episodes_from_rows(rep["data"], rep["count"], rep["data"]["obs"].shape[1])
    plain = env_cfg.action_repeat == 1 and not env_cfg.pixels  # else the spaces are the wrappers', not the id's
    agent = config.agent.get("name", "?") if "agent" in config else "?"
    return write(dataset_id, eps, env=env_cfg.id if plain else None, observation_space=env.observation_space,
                 action_space=env.action_space, root=root, algorithm=f"wm {agent} replay",
                 description=f"the replay of {run_dir} at step {state['step']} (every episode the run collected)")


def summary(dataset) -> dict[str, Any]:
    returns = [float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()]
    meta = dataset.storage.metadata
    return {"id": meta.get("dataset_id"), "episodes": dataset.total_episodes, "steps": dataset.total_steps,
            "return_mean": float(np.mean(returns)) if returns else None,
            "return_min": float(np.min(returns)) if returns else None,
            "return_max": float(np.max(returns)) if returns else None,
            "ref_min_score": meta.get("ref_min_score"), "ref_max_score": meta.get("ref_max_score"),
            "observation_space": str(dataset.observation_space), "action_space": str(dataset.action_space)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wm.data.offline", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="a run's replay as a Minari dataset")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("dataset_id", help="namespace/name-v0")
    ex.add_argument("--root", type=Path, default=None, help="datasets root (default: MINARI_DATASETS_PATH)")
    info = sub.add_parser("info", help="episodes, steps and returns of a dataset")
    info.add_argument("source", help="a dataset id or directory")
    args = p.parse_args(argv)
    try:
        if args.cmd == "export":
            ds = export_run(args.run_dir, args.dataset_id, args.root)
        else:
            ds = load(args.source)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary(ds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
