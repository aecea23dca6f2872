"""Check a composed config before any work: every user error becomes one ConfigError line that names
the problem and the valid choices. Returns a Plan with the typed configs and classes to build."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import torch
from omegaconf import DictConfig, OmegaConf

from wm import checkpoint
from wm.config import param, target_class, typed
from wm.device import DeviceConfig, resolve
from wm.envs.factory import EnvConfig, make_env
from wm.envs.spaces import action_kind
from wm.errors import ConfigError
from wm.intrinsic.latent_disagreement import latent_variant
from wm.logging.logger import LoggerConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class EvalConfig:
    every: int = param(5000, gt=0)
    episodes: int = param(10, gt=0)
    envs: int = param(10, gt=0)  # eval episodes run in waves of this many parallel envs
    video: bool = False
    # end the run at the first eval whose return_mean reaches this
    stop_at: Optional[float] = param(None, free="any return")


@dataclass
class CheckpointConfig:
    every: int = param(10000, gt=0)


@dataclass
class ReplayConfig:
    capacity: int = param(100_000, gt=0)


@dataclass
class RunConfig:
    """The top-level keys every run understands."""

    seed: int = param(0, ge=0)
    total_steps: int = param(50_000, gt=0)
    resume: bool = False
    log_every: int = param(1000, gt=0)
    progress: bool = True
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)


GROUPS = ("env", "data", "model", "agent", "device", "logger", "intrinsic")
UNITS = {"online": "env steps", "evolution": "env steps", "supervised": "train steps (optimizer or EM)"}
SCHEMA_GROUPS = ("env", "data", "model", "agent", "intrinsic")  # groups whose options name a class
FIXED_SCHEMAS = {"run": RunConfig, "device": DeviceConfig, "logger": LoggerConfig}  # one Config for all options


def schema_of(group: str, node: DictConfig) -> type | None:
    """The dataclass that types an option of ``group`` (its ``_target_``'s Config; fixed for run, device,
    logger), or None (an option without a class, e.g. model=none)."""
    if group in FIXED_SCHEMAS:
        return FIXED_SCHEMAS[group]
    cls = target_class(node, group)
    return None if cls is None else getattr(cls, "Config", cls)


def store_defaults(conf_dir: Path) -> None:
    """Put every option's dataclass defaults into Hydra's ConfigStore as ``schema/<group>/<option>`` (and the
    run keys as ``schema/run``): yaml files list theirs first and hold only the values that differ, so each
    default lives once, in its dataclass. Plain containers, not structured configs: typing stays in typed()."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema", name="run", node=_defaults(RunConfig))
    for group in (*SCHEMA_GROUPS, *(g for g in FIXED_SCHEMAS if g != "run")):
        for path in sorted((conf_dir / group).glob("*.yaml")):
            schema = schema_of(group, OmegaConf.load(path))
            if schema is not None:
                store.store(group=f"schema/{group}", name=path.stem, node=_defaults(schema))


def _defaults(schema: type) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(schema))


@dataclass
class Plan:
    """A checked run: typed configs and the classes to build. A part class may define
    ``refuse(plan) -> str | None``, which validate calls once every part is typed: the reason it cannot work
    in this set-up (one line, shown after the env/model/agent names), or None."""

    run: RunConfig
    env: Optional[EnvConfig]  # the online and evolution loops' environment (None for supervised runs)
    env_cls: Optional[type]
    model_cls: Optional[type]
    model: Any
    agent_cls: Optional[type]
    agent: Any
    device: torch.device
    logger: LoggerConfig
    loop: str
    spaces: Optional[tuple[gym.Space, gym.Space]] = None
    intrinsic_cls: Optional[type] = None  # built only for agents with `takes_intrinsic`
    intrinsic: Any = None
    data_cls: Optional[type] = None  # the supervised loop's dataset
    data: Any = None

    @property
    def unit(self) -> str:
        """What ``total_steps`` counts in this run's loop."""
        return UNITS[self.loop]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _choice(cfg: DictConfig, group: str) -> str:
    return str(cfg[group].get("name", "?"))


def agents_for(kind: str) -> list[str]:
    """Agent options whose class acts in ``kind`` action spaces (for error messages)."""
    found = []
    for name in options("agent"):
        node = OmegaConf.load(CONF_DIR / "agent" / f"{name}.yaml")
        try:
            cls = target_class(node, "agent")
        except ConfigError:
            continue
        if cls is not None and kind in getattr(cls, "action_kinds", ()):
            found.append(name)
    return found


def trained_by(group: str, loop: str) -> list[str]:
    """Options of ``group`` whose class is trained by ``loop`` (for error messages)."""
    return [o for o in options(group) if getattr(target_class(
        OmegaConf.load(CONF_DIR / group / f"{o}.yaml"), group), "loop", "online") == loop]


def validate(cfg: DictConfig, run_dir: Path) -> Plan:
    top = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in GROUPS}
    top.pop("experiment", None)
    run = typed(RunConfig, top, "")
    device = resolve(typed(DeviceConfig, cfg.device, "device"))
    logger = typed(LoggerConfig, cfg.logger, "logger")

    env_cls = target_class(cfg.env, "env")
    data_cls = target_class(cfg.data, "data") if "data" in cfg else None
    model_cls = target_class(cfg.model, "model")
    agent_cls = target_class(cfg.agent, "agent")
    loop = getattr(model_cls, "loop", "online") if model_cls else (
        "supervised" if getattr(agent_cls, "loop", None) == "supervised" else "online")  # offline agents
    # a supervised run ignores the env group (the default run's env=cartpole stays out of its way)
    env = typed(env_cls, cfg.env, "env") if env_cls and loop != "supervised" else None
    env_cls = env_cls if env is not None else None
    data = typed(data_cls, cfg.data, "data") if data_cls else None
    model = typed(model_cls, cfg.model, "model") if model_cls else None
    agent = typed(agent_cls, cfg.agent, "agent") if agent_cls else None
    intrinsic_cls = target_class(cfg.intrinsic, "intrinsic") if "intrinsic" in cfg else None
    intrinsic = typed(intrinsic_cls, cfg.intrinsic, "intrinsic") if intrinsic_cls else None
    source = f"data={_choice(cfg, 'data')}" if loop == "supervised" else f"env={_choice(cfg, 'env')}"
    names = f"{source} model={_choice(cfg, 'model')} agent={_choice(cfg, 'agent')}"

    spaces = None
    if loop in ("online", "evolution"):
        if data_cls is not None:
            raise ConfigError(f"{names}: data={_choice(cfg, 'data')} feeds supervised models "
                              f"({', '.join(trained_by('model', 'supervised'))}); "
                              f"model={_choice(cfg, 'model')} learns in an env: use data=none")
        if env is None:
            raise ConfigError(f"{names}: model={_choice(cfg, 'model')} learns in an environment; valid env: "
                              f"{', '.join(o for o in options('env') if o != 'none')}")
        if loop == "evolution" and getattr(agent_cls, "loop", "online") != "evolution":
            raise ConfigError(f"{names}: model={_choice(cfg, 'model')} is trained by the evolution loop; "
                              f"valid: agent={' or agent='.join(trained_by('agent', 'evolution'))}")
        if agent_cls is None:
            online = [a for a in options("agent") if a not in ("none", *trained_by("agent", "evolution"))]
            raise ConfigError(f"{names}: model={_choice(cfg, 'model')} learns online and needs an agent; "
                              f"valid: {', '.join(online)}")
        spaces = _spaces(env)
        kind = action_kind(spaces[1])
        if kind not in agent_cls.action_kinds:
            raise ConfigError(f"{names}: agent={_choice(cfg, 'agent')} takes {'/'.join(agent_cls.action_kinds)} "
                              f"actions but {env.id} has {kind} actions; agents for it: "
                              f"{', '.join(agents_for(kind)) or 'none yet'}")
        if isinstance(spaces[0], gym.spaces.Dict):
            for group, cls in (("model", model_cls), ("agent", agent_cls)):
                if cls is not None and not getattr(cls, "dict_obs", False):
                    raise ConfigError(f"{names}: {group}={_choice(cfg, group)} takes one observation array, and "
                                      f"env.pixels=true env.proprio={env.proprio} gives a Dict (image + vector): "
                                      f"use model=rssm with agent=actor_critic or agent=cem, or env.proprio=none")
            if "intrinsic" in cfg and _choice(cfg, "intrinsic") != "none":
                raise ConfigError(f"{names}: intrinsic={_choice(cfg, 'intrinsic')} does not take Dict (image + "
                                  f"vector) observations yet; use intrinsic=none or env.proprio=none")
        needs = getattr(agent_cls, "requires_model", ())  # e.g. ("rssm",) for agents that use a world model
        if needs and _choice(cfg, "model") not in needs:
            raise ConfigError(f"{names}: agent={_choice(cfg, 'agent')} acts through a learned world model; "
                              f"use model={' or model='.join(needs)}")
        takes = getattr(agent_cls, "takes_intrinsic", False)
        chosen = _choice(cfg, "intrinsic") if "intrinsic" in cfg else "none"
        if not takes and chosen != "none":
            raise ConfigError(f"{names}: intrinsic={chosen} needs an agent that takes "
                              f"intrinsic rewards; valid: agent=dqn or agent=actor_critic, or intrinsic=none")
        if not takes:
            intrinsic_cls = intrinsic = None
        elif takes == "latent":  # the agent adds the bonus in imagination: the option's latent-state variant
            intrinsic_cls = latent_variant(intrinsic_cls)
            if intrinsic_cls is None:
                raise ConfigError(f"{names}: intrinsic={chosen} scores observations; agent={_choice(cfg, 'agent')} "
                                  f"adds its bonus in imagination, on latent states; valid: intrinsic=disagreement "
                                  f"(Plan2Explore) or intrinsic=none")
            intrinsic = typed(intrinsic_cls, cfg.intrinsic if "intrinsic" in cfg else {}, "intrinsic")
        if isinstance(spaces[0], gym.spaces.Dict):  # exploration statistics (coverage) read vector observations
            intrinsic_cls = intrinsic = None
    elif agent_cls is not None and model_cls is not None:
        raise ConfigError(f"{names}: model={_choice(cfg, 'model')} is trained by the {loop} loop and takes "
                          f"no agent; use agent=none")
    elif data_cls is None:
        learner = f"model={_choice(cfg, 'model')}" if model_cls else f"agent={_choice(cfg, 'agent')}"
        raise ConfigError(f"{names}: {learner} learns from a dataset; valid data: "
                          f"{', '.join(o for o in options('data') if o != 'none')}")
    plan = Plan(run, env, env_cls, model_cls, model, agent_cls, agent, device, logger, loop, spaces,
                intrinsic_cls, intrinsic, data_cls, data)
    for cls in (env_cls, data_cls, model_cls, agent_cls, intrinsic_cls):
        # the one hook for what a part cannot work with: spaces (a tabular agent on vectors), other parts
        # (Dyna with n-step targets), a dataset (an HMM on tracking data), files (stage products)
        problem = cls.refuse(plan) if hasattr(cls, "refuse") else None
        if problem:
            raise ConfigError(f"{names}: {problem}")
    if run.resume:
        _check_resume(cfg, run_dir)
    return plan


def _check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """A run continues only with the settings that shaped it (budgets and logging may change)."""
    if not checkpoint.exists(run_dir):
        raise ConfigError(f"resume=true but {run_dir / checkpoint.LATEST} does not exist; "
                          f"pass hydra.run.dir=<an earlier run dir> with the same overrides")
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    now = OmegaConf.to_container(cfg, resolve=True)
    keys = ("seed", "env", "data", "model", "agent", "intrinsic", "replay")
    changed = [k for k in keys if k in saved and saved[k] != _without_new_defaults(k, cfg, saved[k], now.get(k))]
    if changed:
        raise ConfigError(f"resume=true with different {', '.join(changed)} than the run in {run_dir} was started "
                          f"with; use the same overrides (see {run_dir / 'config.yaml'})")


def _without_new_defaults(group: str, cfg: DictConfig, saved: Any, now: Any) -> Any:
    """``now`` without the keys that a newer version of the code added since the run was saved and that still
    hold their default (a new option's default keeps the old behaviour), so such runs still resume."""
    schema = schema_of(group, cfg[group]) if group in SCHEMA_GROUPS and isinstance(now, dict) else None
    if schema is None or not isinstance(saved, dict):
        return now
    defaults = _defaults(schema)
    return {k: v for k, v in now.items() if k in saved or k not in defaults or v != defaults[k]}


def _spaces(env_cfg: EnvConfig) -> tuple[gym.Space, gym.Space]:
    try:
        env = make_env(env_cfg)
    except gym.error.Error as e:
        raise ConfigError(f"env.id={env_cfg.id!r}: {str(e).splitlines()[0]}") from None
    except TypeError as e:
        raise ConfigError(f"env.kwargs for {env_cfg.id}: {e}") from None
    spaces = (env.observation_space, env.action_space)
    env.close()
    return spaces
