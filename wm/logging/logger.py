"""Everything a run reports: metrics.jsonl (append-only), summary.json, and an optional W&B run.

W&B is a guest here: it goes offline without an API key, its run files live in the run dir (so
``wandb sync <run dir>/wandb/offline-run-*`` works later), and a W&B failure is logged, never fatal.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from wm.config import param
from wm.logging.files import write_json

log = logging.getLogger("wm")


@dataclass
class LoggerConfig:
    wandb: bool = False
    project: str = param("wm", free="a W&B project name")
    entity: Optional[str] = param(None, free="a W&B entity (user or team)")
    group: Optional[str] = param(None, free="a W&B group name")
    job_type: Optional[str] = param(None, free="a W&B job type")
    tags: list[str] = param([], free="W&B tags")
    # None: $WANDB_MODE, else online with a key
    mode: Optional[str] = param(None, choices=("online", "offline", "disabled"))


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_mode(cfg: LoggerConfig) -> str:
    mode = cfg.mode or os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if _has_api_key() else "offline"


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cpu_now() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Logger:
    """Writes metrics for one run. ``offset`` is where metrics.jsonl ends (saved in checkpoints)."""

    def __init__(self, run_dir: Path, cfg: LoggerConfig, config: dict[str, Any], resume: bool = False,
                 start_time: float = 0.0, name: str | None = None, start_cpu: float | None = 0.0):
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.t0 = time.time() - start_time  # time keeps counting across resumes
        # CPU seconds too (this process and its finished children), so a resumed run's summary counts every part;
        # None when resumed from a checkpoint that did not save them
        self.cpu0 = None if start_cpu is None else _cpu_now() - start_cpu
        self.last: dict[str, Any] = {}
        self.constants: dict[str, Any] = {}  # written into every summary (e.g. what `steps` counts)
        self._file = open(self.metrics_path, "a" if resume else "w")  # noqa: SIM115 - open for the run's life
        self.wandb = self._init_wandb(config, name, resume) if cfg.wandb else None

    # ---- metrics --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.time() - self.t0

    def clocks(self) -> dict[str, float | None]:
        """What a checkpoint saves so that wall and CPU time keep counting when the run resumes."""
        return {"elapsed": self.elapsed(), "cpu_elapsed": None if self.cpu0 is None else _cpu_now() - self.cpu0}

    @property
    def offset(self) -> int:
        self._file.flush()
        return self._file.tell()

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {"step": int(step), "time": round(self.elapsed(), 3)}
        row.update({k: _clean(v) for k, v in metrics.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        self.last.update({k: v for k, v in row.items() if k not in ("step", "time")})
        self._wandb_call("log", {**metrics, "env_step": step})

    def log_file(self, key: str, path: Path, kind: str, step: int) -> None:
        """Record an image or video written under the run dir (and send it to W&B)."""
        self.log({key: str(Path(path).relative_to(self.run_dir))}, step)
        if self.wandb is not None:
            import wandb

            media = wandb.Image(str(path)) if kind == "image" else wandb.Video(str(path), format="mp4")
            self._wandb_call("log", {key: media, "env_step": step})

    def summary(self, status: str, steps: int, extra: dict[str, Any] | None = None) -> None:
        data = {"status": status, "steps": int(steps), **self.constants, "wall_seconds": round(self.elapsed(), 3)}
        if self.cpu0 is not None:
            data["cpu_seconds"] = round(_cpu_now() - self.cpu0, 3)
        data.update({k: v for k, v in self.last.items() if not isinstance(v, str)})
        data.update(extra or {})
        write_json(self.summary_path, data)
        if self.wandb is not None and status != "running":
            self._wandb_call("summary_update", data)

    def close(self) -> None:
        self._file.close()
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as e:  # never let W&B take a finished run down
                log.warning("wandb.finish failed: %s", e)
            self.wandb = None

    # ---- W&B ------------------------------------------------------------------------------------
    def _init_wandb(self, config: dict[str, Any], name: str | None, resume: bool):
        id_file = self.run_dir / "wandb_id.txt"
        try:
            import wandb

            run_id = id_file.read_text().strip() if resume and id_file.exists() else uuid.uuid4().hex[:8]
            mode = wandb_mode(self.cfg)
            run = self._start_wandb(wandb, mode, run_id, config, name)
            if run is None and mode == "online":
                log.warning("W&B is unreachable: logging offline (sync later with `wandb sync`)")
                run = self._start_wandb(wandb, "offline", run_id, config, name)
            if run is None:
                return None
            id_file.write_text(run_id)
            run.define_metric("env_step")
            run.define_metric("*", step_metric="env_step")
            return run
        except Exception as e:
            log.warning("W&B disabled for this run: %s", e)
            return None

    def _start_wandb(self, wandb, mode: str, run_id: str, config: dict[str, Any], name: str | None):
        try:
            return wandb.init(
                project=self.cfg.project, entity=self.cfg.entity, group=self.cfg.group,
                job_type=self.cfg.job_type, tags=list(self.cfg.tags), name=name, config=config,
                dir=str(self.run_dir), id=run_id, resume="allow", mode=mode, reinit="finish_previous",
                settings=wandb.Settings(init_timeout=60, silent=True),
            )
        except Exception as e:
            log.warning("wandb.init (%s) failed: %s", mode, e)
            return None

    def _wandb_call(self, what: str, data: dict[str, Any]) -> None:
        if self.wandb is None:
            return
        try:
            if what == "log":
                self.wandb.log(data)
            else:
                self.wandb.summary.update(data)
        except Exception as e:
            log.warning("W&B %s failed, continuing without W&B: %s", what, e)
            self.wandb = None
