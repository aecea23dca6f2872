"""The shared online loop: env -> agent acts -> replay -> model learns -> agent improves -> eval -> log.

Every algorithm that learns from interaction runs here; it differs only in its model, its agent and
their update Schedules. Vector envs run without autoreset: a finished env is reset at once with the
next seed of its own stream, so (seed, actions since reset) replays any env exactly on resume.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch

from wm import checkpoint
from wm.core.seeds import EVAL, EVAL_RNG, TRAIN, episode_seed
from wm.data.replay import Replay, tree_map, where_rows
from wm.envs.factory import EnvConfig, make_vec_env
from wm.logging import Logger
from wm.logging.progress import Progress
from wm.loops.finite import check_parameters, checked_act, checked_step
from wm.loops.rng import own_rng
from wm.loops.signals import StopFlag

log = logging.getLogger("wm")


@dataclass
class LoopSettings:
    seed: int
    total_steps: int
    eval_every: int
    eval_episodes: int
    eval_envs: int
    eval_video: bool
    checkpoint_every: int
    log_every: int
    replay_capacity: int
    eval_stop_at: float | None = None  # end at the first eval whose return_mean reaches this


class OnlineLoop:
    def __init__(self, s: LoopSettings, env_cfg: EnvConfig, agent, model, logger: Logger,
                 device: torch.device, progress: bool = True):
        self.s, self.env_cfg, self.agent, self.model, self.logger = s, env_cfg, agent, model, logger
        self.n = env_cfg.num_envs
        self.envs = make_vec_env(env_cfg, self.n)
        self.envs.action_space.seed(s.seed)
        self.eval_envs = make_vec_env(env_cfg, min(s.eval_envs, s.eval_episodes),
                                      render_mode="rgb_array" if s.eval_video else None)
        self.replay = Replay(s.replay_capacity, self.n, self.envs.single_observation_space,
                             self.envs.single_action_space, device, seed=s.seed)
        self.learners = [x for x in (model, agent) if x is not None and hasattr(x.cfg, "update")]
        self.parts = [x for x in (agent, model) if x is not None]  # whose parameters may go non-finite
        self.progress_enabled = progress
        # counters and per-env episode state (all of it goes into checkpoints)
        self.step = 0
        self.rounds = [0] * len(self.learners)
        self.evals_done = 0
        self.last_checkpoint = 0
        self.episode = np.zeros(self.n, np.int64)  # episodes started per env
        self.ep_return = np.zeros(self.n)
        self.ep_length = np.zeros(self.n, np.int64)
        self.ep_actions: list[list[np.ndarray]] = [[] for _ in range(self.n)]
        self.learn_stats: dict[str, list[float]] = defaultdict(list)
        self.last_log = 0

    # ---- the loop -------------------------------------------------------------------------------
    def run(self, resume_state: dict[str, Any] | None = None) -> None:
        if resume_state is None:
            self.obs = self._reset(np.ones(self.n, bool))
            self.is_first = np.ones(self.n, bool)
            self.policy_state = self.agent.initial_state(self.n)
            self._add_reset_rows(np.arange(self.n))
        else:
            self._restore(resume_state)
        bar = Progress(self.s.total_steps, start=self.step, enabled=self.progress_enabled)
        try:
            with StopFlag() as stop:
                while self.step < self.s.total_steps and not stop.requested:
                    self._collect()
                    self._learn()
                    if self.step // self.s.eval_every > self.evals_done:
                        self._evaluate()
                        if self.s.eval_stop_at is not None and \
                                self.logger.last["eval/return_mean"] >= self.s.eval_stop_at:
                            break  # solved: the final evaluation and checkpoint below are this step's
                    if self.step - self.last_checkpoint >= self.s.checkpoint_every:
                        self._checkpoint()
                    bar.update(self.step, **self._bar_info())
                if stop.requested:
                    self._checkpoint()
                    raise KeyboardInterrupt
                if self.evals_done == 0 or self.last_eval_step != self.step:
                    self._evaluate()  # the summary always reports the final policy
                self._checkpoint()
        finally:
            bar.close()
            self.envs.close()
            self.eval_envs.close()

    def _collect(self) -> None:
        self.agent.env_step = self.step
        prefill = getattr(self.agent.cfg, "prefill", 0)
        if self.step < prefill:
            action = self.envs.action_space.sample()  # uniform random prefill
        else:
            # the policy state has not followed the random prefill actions: start it afresh
            fresh = self.is_first | (self.step - self.n < prefill)
            action, self.policy_state = checked_act(
                lambda: self.agent.act(self.obs, self.policy_state, fresh, explore=True), self.step, self.parts)
        obs, reward, terminated, truncated, _ = self.envs.step(action)
        done = terminated | truncated
        ids = np.arange(self.n)
        self.replay.add(ids, obs=obs, action=action, reward=reward, is_first=np.zeros(self.n, bool),
                        is_last=done, is_terminal=terminated)
        self.step += self.n
        self.ep_return += reward
        self.ep_length += 1
        for e in ids:
            self.ep_actions[e].append(np.array(action[e]))
        self.obs, self.is_first = obs, np.zeros(self.n, bool)
        if done.any():
            for e in np.flatnonzero(done):
                self.logger.log({"train/episode_return": self.ep_return[e],
                                 "train/episode_length": int(self.ep_length[e])}, self.step)
            self.episode[done] += 1
            self.ep_return[done], self.ep_length[done] = 0.0, 0
            for e in np.flatnonzero(done):
                self.ep_actions[e] = []
            self.obs = self._reset(done)
            self.is_first = done
            self._add_reset_rows(np.flatnonzero(done))

    def _reset(self, mask: np.ndarray) -> np.ndarray:
        seeds = [episode_seed(self.s.seed, TRAIN, e, int(self.episode[e])) if m else None
                 for e, m in enumerate(mask)]
        obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": mask})
        return obs if not hasattr(self, "obs") else where_rows(mask, obs, self.obs)

    def _add_reset_rows(self, ids: np.ndarray) -> None:
        zeros = np.zeros(len(ids), bool)
        action = np.zeros((len(ids),) + self.replay.data["action"].shape[2:], self.replay.data["action"].dtype)
        self.replay.add(ids, obs=tree_map(lambda o: o[ids], self.obs), action=action, reward=np.zeros(len(ids)),
                        is_first=~zeros, is_last=zeros, is_terminal=zeros)

    def _learn(self) -> None:
        for i, learner in enumerate(self.learners):
            owed = learner.cfg.update.rounds(self.step) - self.rounds[i]
            if owed <= 0:
                continue
            self.rounds[i] += owed
            for _ in range(owed * learner.cfg.update.updates):
                stats = checked_step(learner, self.step, partial(self._train_step, learner), self.parts)
                for key, value in stats.items():
                    self.learn_stats[key].append(value)
            check_parameters(self.parts, self.step, "after the updates")  # the agent may follow the model
        if self.step - self.last_log >= self.s.log_every:
            self._flush_learn_stats()

    def _train_step(self, learner) -> dict[str, float]:
        stats = learner.train_step(self.replay, self.step)
        if learner is self.model:  # the agent acts on the refitted model at once (MBPO's rollouts)
            stats = {**stats, **self.agent.after_model_update(self.replay, self.step)}
        return stats

    def _flush_learn_stats(self) -> None:
        if self.learn_stats:
            self.logger.log({k: float(np.mean(v)) for k, v in self.learn_stats.items()}, self.step)
        self.learn_stats.clear()
        self.last_log = self.step

    # ---- evaluation -----------------------------------------------------------------------------
    def _sync_eval_world(self) -> None:
        """Envs whose world outlives an episode (``state_dict``: e.g. a maze whose walls move after N
        steps) are evaluated in the world the agent trains in now, not in the one it started in."""
        world = getattr(self.envs.envs[0].unwrapped, "state_dict", None)
        if world is not None:
            for env in self.eval_envs.envs:
                env.unwrapped.load_state_dict(world())

    def _evaluate(self) -> None:
        """``eval_episodes`` deterministic episodes; the same seeds at every evaluation, on RNG streams of
        their own so that evaluating (how often, how many episodes) never changes training."""
        with own_rng(episode_seed(self.s.seed, EVAL_RNG, self.step)):
            self._evaluate_policy()

    @torch.no_grad()
    def _evaluate_policy(self) -> None:
        envs, k = self.eval_envs, self.eval_envs.num_envs
        self._sync_eval_world()
        returns, lengths, frames = [], [], []
        for wave in range(0, self.s.eval_episodes, k):
            n = min(k, self.s.eval_episodes - wave)
            obs, _ = envs.reset(seed=[episode_seed(self.s.seed, EVAL, wave + i) for i in range(k)])
            state, is_first = self.agent.initial_state(k), np.ones(k, bool)
            running, ret, length = np.arange(k) < n, np.zeros(k), np.zeros(k, np.int64)
            record = self.s.eval_video and wave == 0
            while running.any():
                if record and running[0]:
                    frames.append(envs.envs[0].render())
                action, state = checked_act(lambda: self.agent.act(obs, state, is_first, explore=False),  # noqa: B023 - called at once
                                            self.step, self.parts)
                obs, reward, terminated, truncated, _ = envs.step(action)
                ret += reward * running
                length += running
                running &= ~(terminated | truncated)
                is_first = np.zeros(k, bool)
                if running.any() and (terminated | truncated).any():
                    # finished envs must be reset before the next vector step; their results are ignored
                    done = terminated | truncated
                    obs = where_rows(done, envs.reset(seed=[0 if d else None for d in done],
                                                      options={"reset_mask": done})[0], obs)
            returns.extend(ret[:n])
            lengths.extend(length[:n])
        self.evals_done = self.step // self.s.eval_every
        self.last_eval_step = self.step
        metrics = {"eval/return_mean": float(np.mean(returns)), "eval/return_std": float(np.std(returns)),
                   "eval/length_mean": float(np.mean(lengths))}
        self._flush_learn_stats()
        self.logger.log(metrics, self.step)
        if frames:
            self._write_video(frames)
        if hasattr(self.agent, "artifacts"):  # e.g. state-visitation images
            self.agent.artifacts(Path(self.logger.run_dir), self.logger, self.step)
        if self.model is not None and hasattr(self.model, "artifacts"):  # e.g. RSSM open-loop videos
            self.model.artifacts(Path(self.logger.run_dir), self.logger, self.step)

    def _write_video(self, frames: list[np.ndarray]) -> None:
        path = Path(self.logger.run_dir) / "videos" / f"eval_{self.step:08d}.mp4"
        path.parent.mkdir(exist_ok=True)
        imageio.mimsave(path, frames, fps=30, macro_block_size=1)
        self.logger.log_file("eval/video", path, "video", self.step)

    def _bar_info(self) -> dict[str, float]:
        ret = self.logger.last.get("eval/return_mean")
        return {} if ret is None else {"eval": ret}

    # ---- checkpoint / resume --------------------------------------------------------------------
    def _checkpoint(self) -> None:
        check_parameters(self.parts, self.step, "before the checkpoint")
        self._flush_learn_stats()
        state = {
            "step": self.step, "rounds": self.rounds, "evals_done": self.evals_done,
            "last_eval_step": getattr(self, "last_eval_step", -1), "last_log": self.last_log,
            "agent": self.agent.state_dict(), "model": None if self.model is None else self.model.state_dict(),
            "replay": self.replay.state_dict(), "rng": checkpoint.rng_state(),
            "action_space_rng": self.envs.action_space.np_random.bit_generator.state,
            "obs": self.obs, "is_first": self.is_first, "policy_state": self.policy_state,
            "episode": self.episode, "ep_return": self.ep_return, "ep_length": self.ep_length,
            "ep_actions": self.ep_actions,
            "env_state": [getattr(e.unwrapped, "state_dict", lambda: None)() for e in self.envs.envs],
            "metrics_offset": self.logger.offset, **self.logger.clocks(),
        }
        checkpoint.save(self.logger.run_dir, state)
        self.last_checkpoint = self.step
        self.logger.summary("running", self.step)

    def _restore(self, st: dict[str, Any]) -> None:
        self.step, self.rounds, self.evals_done = st["step"], st["rounds"], st["evals_done"]
        self.last_eval_step, self.last_log, self.last_checkpoint = st["last_eval_step"], st["last_log"], st["step"]
        self.agent.load_state_dict(st["agent"])
        if self.model is not None:
            self.model.load_state_dict(st["model"])
        self.replay.load_state_dict(st["replay"])
        self.envs.action_space.np_random.bit_generator.state = st["action_space_rng"]
        self.episode, self.ep_return, self.ep_length = st["episode"], st["ep_return"], st["ep_length"]
        self.ep_actions, self.is_first = st["ep_actions"], st["is_first"]
        self.policy_state = st["policy_state"]
        # put every env back where it was: reset with its episode seed, replay the actions since
        self.obs = self._reset(np.ones(self.n, bool))
        for e, env in enumerate(self.envs.envs):
            for action in self.ep_actions[e]:
                env.step(action)
            if st["env_state"][e] is not None:
                env.unwrapped.load_state_dict(st["env_state"][e])
        self.obs = st["obs"]
        checkpoint.set_rng_state(st["rng"])
