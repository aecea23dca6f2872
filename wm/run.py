"""One run: validate, build the parts, hand them to their loop, and always leave a summary.json."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from wm import checkpoint
from wm.errors import ConfigError
from wm.logging import Logger
from wm.loops.evolution import EvolutionLoop
from wm.loops.finite import NonFiniteError
from wm.loops.online import LoopSettings, OnlineLoop
from wm.loops.supervised import SupervisedLoop
from wm.validate import Plan, validate

log = logging.getLogger("wm")
HYDRA_FILES = {".hydra", "train.log"}  # what Hydra writes into a run dir before our code runs


def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    fresh = {p.name for p in run_dir.iterdir()} <= HYDRA_FILES
    try:
        plan = validate(cfg, run_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        if fresh:  # leave no trace of a run that never started
            logging.shutdown()
            shutil.rmtree(run_dir, ignore_errors=True)
            if not any(run_dir.parent.iterdir()):
                run_dir.parent.rmdir()  # the date folder Hydra made for it
        sys.exit(2)
    return execute(cfg, plan, run_dir)


def execute(cfg: DictConfig, plan: Plan, run_dir: Path) -> float | None:
    # the config that shaped the run: without the group its loop does not read (env or data)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("env" if plan.loop == "supervised" else "data", None)
    state = None
    if plan.run.resume:
        try:  # a damaged latest checkpoint falls back to the previous one; refuse when none is good
            state = checkpoint.load(run_dir)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        with open(run_dir / "metrics.jsonl", "r+") as f:  # drop what was logged after the checkpoint
            f.truncate(state["metrics_offset"])
        log.info("resuming %s from step %d", run_dir, state["step"])
    else:
        (run_dir / "config.yaml").write_text(f"# total_steps counts {plan.unit}\n" + OmegaConf.to_yaml(config))
    checkpoint.seed_everything(plan.run.seed)
    if plan.logger.wandb:  # W&B tags: the configured ones plus this job's overrides (seed, swept values)
        plan.logger.tags += [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.")][:20]
    logger = Logger(run_dir, plan.logger, config, resume=state is not None,
                    start_time=state["elapsed"] if state else 0.0, name=run_dir.name,
                    start_cpu=state.get("cpu_elapsed") if state else 0.0)
    logger.constants["steps_unit"] = plan.unit
    loop = None
    status, exit_code = "failed", 0
    try:
        logger.summary("running", state["step"] if state else 0)
        loop = build_loop(plan, logger)
        loop.run(state)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
    except ConfigError as e:  # a user error only found while building a part (e.g. a corrupt data file)
        print(f"error: {e}", file=sys.stderr)
        exit_code = 2
    except NonFiniteError as e:  # a diverged run: say where, and that nothing after it was checkpointed
        print(f"error: {e}; {_kept(loop, run_dir)}", file=sys.stderr)
        exit_code = 1
    finally:
        logger.summary(status, loop.step if loop else 0)
        logger.close()
    log.info("%s: %s", status, {k: v for k, v in logger.last.items() if k.startswith("eval/")})
    if status == "interrupted":
        sys.exit(130)
    if exit_code:
        sys.exit(exit_code)
    return logger.last.get("eval/return_mean")


def _kept(loop: Any, run_dir: Path) -> str:
    if not checkpoint.exists(run_dir):
        return "no checkpoint was written before it"
    return f"the last good checkpoint (step {getattr(loop, 'last_checkpoint', '?')}) is kept"


def online_parts(plan: Plan) -> tuple[Any, Any]:
    """The agent and (or None) the model of an online run, built from the plan (intrinsic module included)."""
    obs_space, act_space = plan.spaces
    model = plan.model_cls(plan.model, obs_space=obs_space, act_space=act_space,
                           device=plan.device) if plan.model_cls else None
    extra = {}
    if plan.intrinsic_cls is not None:
        extra["intrinsic"] = plan.intrinsic_cls(plan.intrinsic, obs_space=obs_space, act_space=act_space,
                                                device=plan.device)
    agent = plan.agent_cls(plan.agent, obs_space=obs_space, act_space=act_space, model=model,
                           device=plan.device, **extra)
    return agent, model


def build_loop(plan: Plan, logger: Logger) -> Any:
    r = plan.run
    settings = LoopSettings(
        seed=r.seed, total_steps=r.total_steps, eval_every=r.eval.every, eval_episodes=r.eval.episodes,
        eval_envs=r.eval.envs, eval_video=r.eval.video, checkpoint_every=r.checkpoint.every,
        log_every=r.log_every, replay_capacity=r.replay.capacity, eval_stop_at=r.eval.stop_at,
    )
    progress = r.progress and not os.environ.get("CI")
    if plan.loop == "online":
        agent, model = online_parts(plan)
        return OnlineLoop(settings, plan.env, agent, model, logger, plan.device, progress=progress)
    if plan.loop == "supervised":  # a model trained on a dataset, or an offline agent (model=none)
        data = plan.data_cls(plan.data, seed=r.seed)
        if plan.model_cls is not None:
            learner = plan.model_cls(plan.model, data=data, device=plan.device)
        else:
            learner = plan.agent_cls(plan.agent, data=data, device=plan.device, episodes=r.eval.episodes,
                                     envs=r.eval.envs, seed=r.seed)
        return SupervisedLoop(settings, data, learner, logger, progress=progress)
    if plan.loop == "evolution":  # World Models: staged rollouts -> V -> M -> CMA-ES controller
        obs_space, act_space = plan.spaces
        model = plan.model_cls(plan.model, obs_space=obs_space, act_space=act_space, device=plan.device)
        agent = plan.agent_cls(plan.agent, obs_space=obs_space, act_space=act_space, model=model,
                               device=plan.device)
        return EvolutionLoop(settings, plan.env, model, agent, logger, plan.device, progress=progress)
    raise ConfigError(f"model loop {plan.loop!r} is not known; valid: online, supervised, evolution")


def restore(run_dir: Path) -> tuple[Plan, Any, Any]:
    """A run's online parts as its latest checkpoint left them: (plan, agent, model), for tools that act with a
    trained policy (dataset rollouts, videos). The config is recomposed from the run's own overrides."""
    plan, agent, model, _ = restore_checkpoint(run_dir)
    return plan, agent, model


def replay_from(plan: Plan, state: dict[str, Any]) -> Any:
    """The replay a run checkpointed (``state`` from ``restore_checkpoint``), to sample its own training data."""
    from wm.data.replay import Replay

    replay = Replay(plan.run.replay.capacity, plan.env.num_envs, *plan.spaces, seed=plan.run.seed)
    replay.load_state_dict(state["replay"])
    return replay


def restore_checkpoint(run_dir: Path) -> tuple[Plan, Any, Any, dict[str, Any]]:
    """``restore`` and the whole checkpoint it read (replay, step, ...), from one read of the file."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from wm.validate import CONF_DIR

    run_dir = Path(run_dir)
    if not checkpoint.exists(run_dir):
        raise ConfigError(f"{run_dir}: no checkpoint to restore")
    saved = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    overrides = [o for o in saved if not o.startswith(("hydra.", "resume", "progress"))]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    plan = validate(cfg, Path(tempfile.mkdtemp()))
    if plan.loop != "online":
        raise ConfigError(f"{run_dir}: a run of the {plan.loop} loop has no online policy to restore")
    state = checkpoint.load(run_dir)
    agent, model = online_parts(plan)
    agent.load_state_dict(state["agent"])
    if model is not None:
        model.load_state_dict(state["model"])
    return plan, agent, model, state
