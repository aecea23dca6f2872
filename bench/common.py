"""Shared benchmark plumbing: run train.py for several seeds, read the run dirs, write results + plots.

A benchmark trains through the same ``train.py`` path users take, one seed at a time (never two timed
runs at once: they hold /tmp/wm-bench.lock), and writes bench/results/<name>.json and <name>.png.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "outputs" / "bench"
LOCK = Path("/tmp/wm-bench.lock")


def machine() -> dict[str, Any]:
    import gymnasium
    import numpy
    import torch

    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor is enough
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    # "AMD EPYC" names several generations whose float kernels differ: family/model and torch's kernel level
    # (AVX2, AVX512) tell which trajectories a seed can be expected to repeat
    return {"cpu": info.get("model name", platform.processor()),
            "cpu_id": " ".join(f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__,
            "gymnasium": gymnasium.__version__, "torch_threads_default": torch.get_num_threads(),
            "python": platform.python_version(), "loadavg_at_start": list(os.getloadavg())}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        code = ["wm", "bench", "conf", "train.py", ":(exclude)bench/results"]  # results are outputs, not code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *code], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def read_run(run_dir: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"rows": rows, "summary": summary}


def curve(rows: list[dict], key: str = "eval/return_mean") -> list[list[float]]:
    return [[r["step"], r[key]] for r in rows if key in r]


def first_step_at(points: list[list[float]], threshold: float) -> int | None:
    return next((int(s) for s, v in points if v >= threshold), None)


def train_seed(name: str, overrides: list[str], seed: int, threshold: float | None,
               metric: str = "eval/return_mean", reuse: bool = False, lock: bool = True,
               resume: bool = False, keep: bool = False) -> dict[str, Any]:
    """Run one seed through train.py and return its per-seed record (also kept beside the run dir, so a
    reused run reports the wall and CPU time it was measured with).

    ``reuse``: take a completed run dir of the same command instead of running again. ``resume``: a run dir
    left unfinished (stopped, interrupted) continues from its checkpoint (the record says ``resumed``; its CPU
    seconds are the whole run's from the run's own clock, which checkpoints carry across parts, or the last part's
    alone when the first part predates that clock: then ``cpu_seconds_parts`` says "last"). ``lock``: hold the
    bench lock for this seed (unless WM_BENCH_LOCK=0); a benchmark that holds it itself and runs seeds in
    parallel passes False. CPU time is the run's own (``wait4``), right even when seeds run in parallel.
    ``keep``: a slim copy of the completed run goes to bench/results/runs/ (committed with the study), and a run
    dir that is gone (outputs/ does not outlive every machine) is restored from it, so a study spanning
    sessions reuses what it ran (``reuse``) and its report can be made again."""
    run_dir = RUNS / name / f"seed{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    record = run_dir.parent / f"seed{seed}.record.json"
    kept = RESULTS / "runs" / name / f"seed{seed}"
    if keep and not run_dir.exists() and (kept / "summary.json").exists():
        _slim_copy(kept, run_dir, record_from=kept / "record.json", record_to=record)
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}",
           "progress=false"]
    if (reuse or resume) and _stale(run_dir, cmd[2:]):  # the preset or a default changed since it ran
        aside = run_dir.with_name(f"{run_dir.name}.stale-{dt.datetime.now():%Y%m%d-%H%M%S}")
        run_dir.rename(aside)
        if record.exists():  # its wall and CPU seconds go with it
            record.replace(aside / "record.json")
        print(f"{name} seed {seed}: its config changed since {run_dir} ran; moved to {aside.name}, running anew",
              flush=True)
    if reuse and _completed_with(run_dir, cmd[2:]):
        saved = json.loads(record.read_text()) if record.exists() else {}
        wall = saved.get("wall_seconds", read_run(run_dir)["summary"]["wall_seconds"])
        timing = {k: saved.get(k) for k in ("cpu", "cpu_id", "cpu_seconds", "loadavg_1min_at_start", "loadavg_at_end",
                                            "resumed")}
        timing.update({k: saved[k] for k in ("cpu_seconds_parts",) if k in saved})
        print(f"{name} seed {seed}: reused {run_dir}", flush=True)
        if keep:
            _slim_copy(run_dir, kept, record_from=record, record_to=kept / "record.json")
        return _record(run_dir, seed, metric, threshold, wall, timing, reused=True)
    resumed = resume and (run_dir / "checkpoints" / "latest.pt").exists()
    if resumed:
        cmd.append("resume=true")
    log = run_dir.parent / f"seed{seed}.log"
    with open(LOCK, "w") as held:
        if lock and os.environ.get("WM_BENCH_LOCK", "1") != "0":
            fcntl.flock(held, fcntl.LOCK_EX)
        load = round(os.getloadavg()[0], 2)
        t0 = time.time()
        with open(log, "a" if resumed else "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{name} seed {seed} failed:\n{log.read_text()[-3000:]}")
    host = machine()
    cpu = round(usage.ru_utime + usage.ru_stime, 2)  # the child's own (wait4), not the machine's
    run_cpu = json.loads((run_dir / "summary.json").read_text()).get("cpu_seconds")  # the run's clock, all parts
    timing = {"cpu": host["cpu"], "cpu_id": host["cpu_id"],
              "cpu_seconds": run_cpu if resumed and run_cpu is not None else cpu,
              "loadavg_1min_at_start": load, "loadavg_at_end": round(os.getloadavg()[0], 2), "resumed": resumed}
    if resumed:
        timing["cpu_seconds_parts"] = "all" if run_cpu is not None else "last"
    rec = _record(run_dir, seed, metric, threshold, wall, timing, reused=False)
    record.write_text(json.dumps({"wall_seconds": rec["wall_seconds"], **timing, "overrides": cmd[2:]}) + "\n")
    if keep:
        _slim_copy(run_dir, kept, record_from=record, record_to=kept / "record.json")
    print(f"{name} seed {seed}: final {rec['final']} steps_to_{threshold} {rec['steps_to_threshold']} "
          f"wall {wall:.0f}s cpu {timing['cpu_seconds']:.0f}s", flush=True)
    return rec


def _record(run_dir: Path, seed: int, metric: str, threshold: float | None, wall: float, timing: dict,
            reused: bool) -> dict[str, Any]:
    run = read_run(run_dir)
    points = curve(run["rows"], metric)
    steps = run["summary"]["steps"]
    return {
        "seed": seed, "final": run["summary"].get(metric), "best": max((v for _, v in points), default=None),
        "steps_to_threshold": first_step_at(points, threshold) if threshold is not None else None,
        "wall_seconds": round(wall, 2), "train_wall_seconds": run["summary"]["wall_seconds"], **timing,
        "env_steps_per_second": round(steps / run["summary"]["wall_seconds"], 1),
        "reused_run_dir": reused, "curve": points,
    }


def final_over_last(rec: dict[str, Any], k: int = 3) -> dict[str, Any]:
    """A train_seed record scored by the mean of its last ``k`` evaluations (wm.report.final_of, issue 24's final
    performance) instead of its last one, which is kept as ``last_eval``."""
    from wm.report import final_of

    return {**rec, "last_eval": rec["final"], "final": final_of([v for _, v in rec["curve"]], k)}


def _completed_with(run_dir: Path, overrides: list[str]) -> bool:
    """A completed run dir made by the same command line (Hydra's overrides.yaml)."""
    import yaml

    saved = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / "summary.json").exists() or not saved.exists():
        return False
    same = [o for o in yaml.safe_load(saved.read_text()) if not o.startswith(("hydra.", "resume="))] == \
        [o for o in overrides if not o.startswith(("hydra.", "resume="))]
    return same and read_run(run_dir)["summary"]["status"] == "completed"


SLIM = (".hydra/config.yaml", ".hydra/overrides.yaml", "config.yaml", "summary.json")


def _slim_copy(src: Path, dst: Path, record_from: Path, record_to: Path) -> None:
    """What a report and a reuse read of a run dir: its configs, summary and evaluation rows (metrics.jsonl
    without the training rows: a few KB instead of a few MB), plus its bench record; each file written
    atomically."""
    for rel in SLIM:
        if (src / rel).exists():
            _write(dst / rel, (src / rel).read_text())
    lines = (src / "metrics.jsonl").read_text().splitlines()
    _write(dst / "metrics.jsonl", "".join(f"{line}\n" for line in lines if '"eval/' in line))
    if record_from.exists():
        record = json.loads(record_from.read_text())
        _write(record_to, json.dumps(record) + "\n")
        summary = json.loads((dst / "summary.json").read_text())  # the machine that measured it, beside its figures
        _write(dst / "summary.json", json.dumps({**summary, **{k: record[k] for k in ("cpu", "cpu_id") if k in record}},
                                                indent=2) + "\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


_COMPOSE = threading.Lock()  # Hydra's compose API keeps global state: one composition at a time


def composed(overrides: list[str]) -> dict[str, Any]:
    """The job config train.py would run with these overrides, composed from today's conf/ (as saved in a run
    dir's .hydra/config.yaml, without the ``resume`` flag)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with _COMPOSE, initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name="train", overrides=list(overrides)))
    cfg.pop("resume", None)
    return cfg


def _stale(run_dir: Path, overrides: list[str]) -> bool:
    """A run dir made by a config other than the one these overrides compose to today (a preset, a schema
    default or a sweep file changed since): neither reused nor resumed."""
    import yaml

    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():
        return False
    then = yaml.safe_load(saved.read_text())
    then.pop("resume", None)
    return then != composed([o for o in overrides if not o.startswith("resume=")])


def spread(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def iqm_interval(values: list[float | None]) -> dict[str, Any] | None:
    """IQM over seeds with rliable's 95% stratified-bootstrap interval (wm.report's statistics)."""
    import numpy as np

    from wm import report

    vals = np.array([v for v in values if v is not None], float)
    if not len(vals):
        return None
    value, low, high = report.interval({"x": vals}, report.iqm_of)["x"]
    return {"iqm": round(value, 2), "ci95": [round(low, 2), round(high, 2)], "n": len(vals)}


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "date": dt.datetime.now().isoformat(timespec="seconds"), "git_commit": git_commit(),
            "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def plot_curves(name: str, groups: dict[str, list[dict]], threshold: float | None = None,
                ylabel: str = "eval return (mean of episodes)", xlabel: str = "env steps") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, seeds) in enumerate(groups.items()):
        for j, rec in enumerate(seeds):
            xs, ys = zip(*rec["curve"]) if rec["curve"] else ((), ())
            ax.plot(xs, ys, color=f"C{i}", alpha=0.8, lw=1.2, label=label if j == 0 else None)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_figure(fig, name: str) -> Path:
    """Lay out, write bench/results/<name>.png and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
