"""The evolution loop (World Models): staged training, each stage cached in the run dir and resumable.

    rollouts   random-policy episodes -> rollouts/ep_*.npz          (real env steps: budget.rollouts share)
    vae        ConvVAE on the stored frames -> vae.pt, media/vae_reconstructions.png
    mdnrnn     MDN-RNN on encoded sequences -> mdnrnn.pt, videos/dream.mp4
    controller CMA-ES generations -> controller.pt                   (real env steps: budget.controller share)
    test       the best controller on eval.episodes fresh tracks -> eval/return_mean (not in total_steps,
               like the online loop's evaluations)

``total_steps`` bounds the real env steps of all stages together; ``model.budget`` splits it. A finished stage
writes ``stages/<name>.json`` and is skipped on resume; a killed stage continues from its last checkpoint
(rollouts: the stored episodes; vae / mdnrnn: every ``model.stage_checkpoint_every`` optimizer steps;
controller: every generation, with the CMA-ES object as plain values). ``model.stages.<name>_from=<run dir>``
takes a product from an earlier run (its env steps are then not spent, and not counted, here). Products load
with ``torch.load(weights_only=True)`` (``load_product``): a file from a shared run dir cannot run code.

Who does what: the loop steps every real env (rollouts through wm/data/rollouts.py ``collect``; controller
evaluations through wm/loops/population.py, batched, or as Ray tasks with ``agent.ray.enabled``), picks the
episode seeds (wm/core/seeds.py streams) and spends the budgets. It loads the stored rollouts once and passes
them to the model's stage steps (``train_vae_step(data, ...)``, ``encode_dataset(data)``, ...). The agent
(wm/agents/cmaes.py) asks and tells CMA-ES, maps (z, h) to actions, and evaluates candidates in the dream.
Episodes of candidate c, rollout r in generation g start from reset seed ``episode_seed(seed, CONTROLLER, g, r)``:
all candidates of a generation meet the same R tracks, and a resumed run repeats them exactly.

metrics.jsonl ``step`` is real env steps so far; the V and M stages log at the step count they started at.
"""

from __future__ import annotations

import logging
import pickle
import time
from functools import partial
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch

from wm import checkpoint
from wm.core.seeds import CONTROLLER, DREAM, EVAL, REEVAL, STAGE, episode_seed
from wm.data.rollouts import FrameDataset, collect, episode_files
from wm.envs.factory import EnvConfig
from wm.errors import ConfigError
from wm.logging import Logger
from wm.logging.files import atomic_write, write_json
from wm.logging.progress import Progress
from wm.loops.population import PopulationEnvs, evaluate_ray
from wm.loops.signals import StopFlag

log = logging.getLogger("wm")
STAGES = ("rollouts", "vae", "mdnrnn", "controller", "test")


def stage_source(cfg, name: str) -> Path | None:
    """The run dir a stage's product comes from (``model.stages.<name>_from``; V also from ``mdnrnn_from``), or
    None where this run makes it."""
    src = getattr(cfg.stages, f"{name}_from")
    if name == "vae" and src is None:
        src = cfg.stages.mdnrnn_from
    return Path(src) if src else None


def load_product(path: Path) -> Any:
    """A stage product (tensors and plain values only): anything else, or a damaged file, is one ConfigError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: not a safe stage product ({why[:200]})") from None


def split_budget(total: int, rollouts: float, controller: float) -> tuple[int, int]:
    share = rollouts / (rollouts + controller)
    r = round(total * share)
    return r, total - r


class EvolutionLoop:
    def __init__(self, s, env_cfg: EnvConfig, model, agent, logger: Logger, device: torch.device,
                 progress: bool = True):
        self.s, self.env_cfg, self.model, self.agent, self.logger = s, env_cfg, model, agent, logger
        self.device, self.progress_enabled = device, progress
        self.dir = Path(logger.run_dir)
        b = model.cfg.budget
        self.budget = dict(zip(("rollouts", "controller"), split_budget(s.total_steps, b.rollouts, b.controller)))
        self.step = 0                      # real env steps spent in this run, all stages
        self.spent = {"rollouts": 0, "controller": 0}
        self.resume: dict[str, Any] | None = None
        self.stop: StopFlag | None = None
        self.bar: Progress | None = None
        self.envs = PopulationEnvs(env_cfg)  # the real envs of every controller evaluation
        self.data: FrameDataset | None = None  # the stored rollouts, read by the V and M stages

    # ---- driver -------------------------------------------------------------------------------------------
    def run(self, resume_state: dict[str, Any] | None = None) -> None:
        if resume_state is not None:
            self.step, self.spent = resume_state["step"], dict(resume_state["spent"])
            self.resume = resume_state
            log.info("resuming in stage %s", resume_state["stage"])
        self.bar = Progress(self.s.total_steps, start=self.step, enabled=self.progress_enabled)
        try:
            with StopFlag() as self.stop:
                if resume_state is None:
                    self._checkpoint("rollouts", None)  # a run killed at once can still resume
                for name in STAGES:
                    if self._done(name):
                        self._load_product(name)
                        continue
                    sub = self.resume["sub"] if self.resume is not None and self.resume["stage"] == name else None
                    if sub is not None:  # mid-stage: continue with the RNG states of its last checkpoint
                        checkpoint.set_rng_state(self.resume["rng"])
                    else:  # a stage starts from its own seed, whatever ran (or was skipped) before it
                        torch.manual_seed(episode_seed(self.s.seed, STAGE + STAGES.index(name)))
                    self.resume = None
                    t0 = time.time()
                    log.info("stage %s", name)
                    getattr(self, f"_stage_{name}")(sub)
                    self._mark(name, {"seconds": round(time.time() - t0, 2)})
                self._checkpoint("done", None)
        finally:
            self.bar.close()
            self.envs.close()

    def _done(self, name: str) -> bool:
        return (self.dir / "stages" / f"{name}.json").exists()

    def _mark(self, name: str, info: dict) -> None:
        write_json(self.dir / "stages" / f"{name}.json", {"step": self.step, **info})
        nxt = STAGES[STAGES.index(name) + 1] if name != STAGES[-1] else "done"
        self._checkpoint(nxt, None)

    def _checkpoint(self, stage: str, sub: Any) -> None:
        checkpoint.save(self.dir, {
            "stage": stage, "sub": sub, "step": self.step, "spent": dict(self.spent), "rng": checkpoint.rng_state(),
            "metrics_offset": self.logger.offset, **self.logger.clocks(),
        })
        self.logger.summary("running", self.step)

    def _check_stop(self, stage: str, sub_fn) -> None:
        if self.stop.requested:
            self._checkpoint(stage, sub_fn())
            raise KeyboardInterrupt

    def _source(self, name: str) -> Path | None:
        return stage_source(self.model.cfg, name)

    def _rollout_dir(self) -> Path:
        src = self._source("rollouts")
        return src / "rollouts" if src else self.dir / "rollouts"

    def _data(self) -> FrameDataset:
        if self.data is None:
            self.data = FrameDataset(self._rollout_dir())
        return self.data

    def _load_product(self, name: str) -> None:
        """A stage done earlier (this run before a resume): load what later stages need."""
        if name == "vae":
            self.model.load_vae_state(load_product(self._product("vae")))
        elif name == "mdnrnn":
            self.model.load_rnn_state(load_product(self._product("mdnrnn")))
        elif name == "controller":
            self.best = load_product(self.dir / "controller.pt")["best"]

    def _product(self, name: str) -> Path:
        src = self._source(name)
        return (src if src else self.dir) / f"{name}.pt"

    def _save(self, path: Path, obj: Any) -> None:
        atomic_write(path, lambda tmp: torch.save(obj, tmp))

    # ---- stage 1: rollouts --------------------------------------------------------------------------------
    def _stage_rollouts(self, sub) -> None:
        src = self._source("rollouts")
        if src is not None:
            files = episode_files(src / "rollouts")
            if not (src / "stages" / "rollouts.json").exists() or not files:
                raise ConfigError(f"model.stages.rollouts_from={src}: no finished rollouts stage there")
            self.logger.log({"rollouts/episodes": len(files), "rollouts/reused_steps":
                             sum(n for _, n in files.values())}, self.step)
            return
        cfg, t0, start = self.model.cfg.rollouts, time.time(), self.step
        folder = self.dir / "rollouts"

        def saved(k: int, steps: int) -> None:
            self.spent["rollouts"] = steps
            self.step = steps
            self.bar.update(self.step)
            self._checkpoint("rollouts", None)
            self._check_stop("rollouts", lambda: None)

        steps = collect(folder, self.env_cfg, self.s.seed, self.budget["rollouts"], cfg.max_episodes, cfg.workers,
                        cfg.dt, cfg.resample, on_episode=saved)
        self.spent["rollouts"] = self.step = steps
        files = episode_files(folder)
        rate = (steps - start) / max(time.time() - t0, 1e-9)
        self.logger.log({"rollouts/episodes": len(files), "rollouts/steps": steps, "rollouts/steps_per_s": rate},
                        self.step)

    # ---- stage 2: V ---------------------------------------------------------------------------------------
    def _stage_vae(self, sub) -> None:
        if self._source("vae") is not None:
            self._load_product("vae")
            return
        m, data = self.model, self._data()
        self._train("vae", sub, m.vae_steps(len(data.frames)), partial(m.train_vae_step, data), m.vae_state,
                    m.load_vae_state)
        self._save(self.dir / "vae.pt", self.model.vae_state())
        path = self.dir / "media" / "vae_reconstructions.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(path, self.model.reconstructions(data))
        self.logger.log_file("media/vae_reconstructions", path, "image", self.step)

    def _train(self, name: str, sub, total: int, step_fn, state_fn, load_fn) -> None:
        """``total`` optimizer steps of V or M, from the checkpointed ``sub`` ({i, state}) when resuming."""
        i = 0
        if sub is not None:
            i = sub["i"]
            load_fn(sub["state"])
        every = max(1, total // 20)
        stats: dict[str, list[float]] = {}
        t0, i0 = time.time(), i
        while i < total:
            for k, v in step_fn(self.s.seed, i).items():
                stats.setdefault(k, []).append(v)
            i += 1
            if i % every == 0 or i == total:
                row = {k: float(np.mean(v)) for k, v in stats.items()}
                row.update({f"{name}/step": i, f"{name}/steps_per_s": (i - i0) / max(time.time() - t0, 1e-9)})
                self.logger.log(row, self.step)
                log.info("%s %d/%d %s", name, i, total, {k: round(v, 3) for k, v in row.items() if "loss" in k})
                stats.clear()
            if i % self.model.cfg.stage_checkpoint_every == 0 and i < total:
                self._checkpoint(name, {"i": i, "state": state_fn()})
            self._check_stop(name, lambda i=i: {"i": i, "state": state_fn()})

    # ---- stage 3: M ---------------------------------------------------------------------------------------
    def _stage_mdnrnn(self, sub) -> None:
        if self._source("mdnrnn") is not None:
            self._load_product("mdnrnn")
            return
        m, data = self.model, self._data()
        m.encode_dataset(data)
        self._train("rnn", sub, m.rnn_steps(data.steps), partial(m.train_rnn_step, data), m.rnn_state,
                    m.load_rnn_state)
        self._save(self.dir / "mdnrnn.pt", self.model.rnn_state())
        self._dream_video()

    def _dream_video(self, steps: int = 200) -> None:
        """What M imagines: a zero-parameter controller dreaming ``steps`` steps at temperature tau from a stored
        first frame, decoded by V (the done head is ignored here, so the video always has its length)."""
        m, a, seed = self.model, self.agent, episode_seed(self.s.seed, DREAM)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        z = m.initial_latents(1, np.random.default_rng(seed))
        state = m.rnn.initial_state(1, self.device)
        h, params, latents = state[0][0], torch.zeros(1, a.dim, device=self.device), []
        for _ in range(steps):
            latents.append(z)
            _, act = a.actions(params, a.features(z, h))
            z, _, _, state, h = m.dream_step(z, act, state, a.cfg.temperature or m.cfg.rnn.temperature, gen)
        frames = m.decode_frames(torch.cat(latents))
        path = self.dir / "videos" / "dream.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(path, list(frames), fps=25, macro_block_size=1)
        self.logger.log_file("videos/dream", path, "video", self.step)

    # ---- stage 4: C ---------------------------------------------------------------------------------------
    def _stage_controller(self, sub) -> None:
        a, cfg = self.agent, self.agent.cfg
        if cfg.dream and self.model.latents is None:  # dreams start from z of stored first frames
            self.model.encode_dataset(self._data())
        if sub is None:
            a.start(self.s.seed)
            sub = {"gen": 0, "last_cost": 0, "best": None, "es": None}
        else:
            try:
                a.load_es_state(sub["es"])
            except ConfigError as e:
                raise ConfigError(f"{self.dir / checkpoint.LATEST}: {e}") from None
        budget = self.budget["controller"]
        P, R = cfg.population, cfg.rollouts
        while sub["gen"] < cfg.generations:
            left = budget - self.spent["controller"]
            # another generation only if the budget still holds it and the re-evaluation of its best
            if left <= 0 or (not cfg.dream and sub["gen"] > 0 and left < sub["last_cost"] + self._reeval_cost(sub)):
                break
            g, t0 = sub["gen"], time.time()
            X = a.ask()
            params = np.repeat(X, R, axis=0)
            if cfg.dream:
                rets, dream_steps = a.evaluate_dream(params, episode_seed(self.s.seed, DREAM, g))
                used = 0
            else:
                seeds = [episode_seed(self.s.seed, CONTROLLER, g, r) for _ in range(P) for r in range(R)]
                rets, used = self._evaluate(params, seeds, left)
                dream_steps = 0
            fitness = rets.reshape(P, R).mean(1)
            a.tell(X, fitness)
            self._spend(used)
            row = {"controller/generation": g + 1, "controller/fitness_best": float(fitness.max()),
                   "controller/fitness_mean": float(fitness.mean()), "controller/fitness_std": float(fitness.std()),
                   "controller/sigma": float(a.es.sigma), "controller/env_steps": used,
                   "controller/seconds": time.time() - t0}
            if cfg.dream:
                row["controller/dream_steps"] = dream_steps
            sub.update(gen=g + 1, last_cost=used, last_best=torch.tensor(X[int(fitness.argmax())]))
            left = budget - self.spent["controller"]
            last = g + 1 == cfg.generations or (not cfg.dream and left < used + self._reeval_cost(sub))
            if (g + 1) % cfg.reeval_every == 0 or last:  # the last generation's best is always re-evaluated
                score = self._reeval(sub["last_best"].numpy(), g, sub)
                if score is not None:
                    row["controller/reeval_return"] = score
            self.logger.log(row, self.step)
            sub["es"] = a.es_state()
            self._checkpoint("controller", sub)
            self._check_stop("controller", lambda: sub)
        if sub["best"] is None:  # no re-evaluation fitted the budget: the best single evaluation CMA-ES saw
            sub["best"] = {"params": torch.tensor(a.es.result.xbest), "score": None, "generation": None}
        self.best = sub["best"]
        self._save(self.dir / "controller.pt", {"best": self.best, "es": a.es_state(), "generations": sub["gen"]})

    def _reeval_cost(self, sub: dict) -> float:
        """Env steps a re-evaluation should take, from the last generation's steps per episode."""
        cfg = self.agent.cfg
        return sub["last_cost"] / (cfg.population * cfg.rollouts) * cfg.reeval_rollouts

    def _reeval(self, params: np.ndarray, g: int, sub: dict) -> float | None:
        """The generation's best candidate on ``reeval_rollouts`` fresh tracks, if the budget still holds them."""
        cfg = self.agent.cfg
        left = self.budget["controller"] - self.spent["controller"]
        if left <= 0 or (not cfg.dream and self._reeval_cost(sub) > left):
            return None
        seeds = [episode_seed(self.s.seed, REEVAL, g, r) for r in range(cfg.reeval_rollouts)]
        rets, used = self._evaluate(np.repeat(params[None], len(seeds), 0), seeds, left)
        self._spend(used)
        score = float(rets.mean())
        if used < left and (sub["best"] is None or sub["best"]["score"] is None or score > sub["best"]["score"]):
            sub["best"] = {"params": torch.tensor(params), "score": score, "generation": g + 1}
        return score

    def _evaluate(self, params: np.ndarray, seeds: list[int], budget: int | None):
        """Returns of controllers ``params`` in the real env, one episode per seed, and the env steps spent."""
        if self.agent.cfg.ray.enabled:
            return evaluate_ray(self.model, self.agent, self.env_cfg, params, seeds, budget)
        return self.envs.evaluate(self.model, self.agent, params, seeds, budget)

    def _spend(self, used: int) -> None:
        self.spent["controller"] += used
        self.step += used
        self.bar.update(self.step)

    # ---- stage 5: test ------------------------------------------------------------------------------------
    def _stage_test(self, sub) -> None:
        """The best controller on ``eval.episodes`` tracks no stage has seen (waves of ``eval.envs``)."""
        n, wave = self.s.eval_episodes, self.s.eval_envs
        rets, t0, frames = [], time.time(), [] if self.s.eval_video else None
        params = np.asarray(self.best["params"])
        for start in range(0, n, wave):
            seeds = [episode_seed(self.s.seed, EVAL, k) for k in range(start, min(n, start + wave))]
            r, _ = self.envs.evaluate(self.model, self.agent, np.repeat(params[None], len(seeds), 0), seeds,
                                      frames=frames if start == 0 else None)
            rets.extend(r.tolist())
        self.logger.log({"eval/return_mean": float(np.mean(rets)), "eval/return_std": float(np.std(rets)),
                         "eval/episodes": n, "eval/seconds": time.time() - t0,
                         "eval/controller_generation": self.best["generation"] or -1}, self.step)
        write_json(self.dir / "test_returns.json", {"returns": rets, "best": {
            k: v for k, v in self.best.items() if k != "params"}})
        if frames:
            path = self.dir / "videos" / "test.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            imageio.mimwrite(path, frames, fps=25, macro_block_size=1)
            self.logger.log_file("videos/test", path, "video", self.step)


def stage_of(run_dir: Path) -> str | None:
    """The stage a run dir's checkpoint is in (None without a checkpoint): for tests and tools."""
    if not checkpoint.exists(run_dir):
        return None
    return checkpoint.load(run_dir)["stage"]

