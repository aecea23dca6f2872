"""Run every experiment preset for a few steps (seed 0) and keep its metrics, to show a refactor changed nothing.

    python scripts/fingerprint_presets.py --out /tmp/before.json     # on the commit before the change
    python scripts/fingerprint_presets.py --out /tmp/after.json      # after it
    python scripts/fingerprint_presets.py --compare /tmp/before.json /tmp/after.json

Each preset runs through train.py at a tiny budget (the learners do update: the budget passes every preset's
update start); metrics.jsonl rows are kept without wall-clock keys, so two runs on one machine compare bit for
bit. CarRacing presets are the slowest (~1-2 CPU-minutes each); ``--skip`` leaves some out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPERVISED = ["total_steps=20", "eval.every=10", "checkpoint.every=10"]
ONLINE = ["total_steps=1600", "eval.every=800", "eval.episodes=2", "eval.envs=2", "checkpoint.every=100000",
          "log_every=200"]
CLOCK = ("time", "wall", "second", "per_s", "fps", "/s")  # keys that measure the clock, not the algorithm


def presets() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def loop_of(preset: str) -> str:
    from hydra import compose, initialize_config_dir

    from wm.config import target_class

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}"])
    cls = target_class(cfg.model, "model")
    return getattr(cls, "loop", "online") if cls is not None else "online"


def run(preset: str) -> dict:
    overrides = SUPERVISED if loop_of(preset) == "supervised" else ONLINE
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "train.py"), f"experiment={preset}", "seed=0", *overrides,
               "device=cpu", "device.threads=1", f"hydra.run.dir={tmp}/run", "progress=false"]
        start = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        end = resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = []
        path = Path(tmp) / "run" / "metrics.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                rows.append({k: v for k, v in row.items() if not any(c in k for c in CLOCK)})
        return {"command": " ".join(cmd[1:-2]), "returncode": proc.returncode, "rows": rows,
                "stderr_tail": proc.stderr[-500:] if proc.returncode else "",
                "cpu_seconds": round(end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime, 1)}


def compare(a: dict, b: dict) -> int:
    """Per preset: same (every value equal), same values with keys only one side logs, or CHANGED."""
    changed = 0
    for preset in sorted(set(a) | set(b)):
        ra, rb = a.get(preset, {}).get("rows"), b.get(preset, {}).get("rows")
        ok = ra is not None and rb is not None and a[preset]["returncode"] == b[preset]["returncode"] == 0
        common = lambda x, y: {k: v for k, v in x.items() if k in y}
        diff = None if ok and len(ra) == len(rb) else 0
        if diff is None:
            diff = next((i for i, (x, y) in enumerate(zip(ra, rb)) if common(x, y) != common(y, x)), None)
        extra = sorted({k for x, y in zip(ra or [], rb or []) for k in set(x) ^ set(y)})
        changed += diff is not None
        if diff is not None:
            print(f"CHANGED {preset}" + (f"  (first differing row {diff}: {ra[diff]} vs {rb[diff]})" if ok else ""))
        else:
            print(f"same    {preset}" + (f"  (keys logged on one side only: {', '.join(extra)})" if extra else ""))
    return changed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path)
    p.add_argument("--only", nargs="+")
    p.add_argument("--skip", nargs="+", default=[])
    p.add_argument("--compare", nargs=2, type=Path)
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads(f.read_text()) for f in args.compare)
        sys.exit(1 if compare(a, b) else 0)
    out = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    for preset in args.only or presets():
        if preset in args.skip or preset in out:
            continue
        out[preset] = run(preset)
        print(f"{preset}: rc={out[preset]['returncode']} rows={len(out[preset]['rows'])} "
              f"cpu={out[preset]['cpu_seconds']}s", flush=True)
        if args.out:
            args.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
