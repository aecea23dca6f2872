"""A joblib multirun of a small named sweep completes, and wm.report turns it into markdown and plots,
listing runs that did not complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.conftest import ROOT, summary


def test_joblib_sweep_then_report(tmp_path):
    sweep_dir, out = tmp_path / "sweep", tmp_path / "report"
    proc = subprocess.run([sys.executable, "train.py", "sweep=smoke", f"hydra.sweep.dir={sweep_dir}",
                           "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 4 and all(summary(j)["status"] == "completed" for j in jobs)

    # a copy of one run that is still going (its summary says so), as the report may meet mid-sweep
    running = sweep_dir / "9_still_running"
    shutil.copytree(jobs[0], running)
    (running / "summary.json").write_text(json.dumps({**summary(jobs[0]), "status": "running"}))

    proc = subprocess.run([sys.executable, "-m", "wm.report", str(sweep_dir), "--out", str(out),
                           "--threshold", "15"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (out / "report.md").read_text()
    assert "| `agent.double=False` | 2 (2) |" in report and "| `agent.double=True` | 3 (2) |" in report
    assert "9_still_running" in report and "**running**" in report
    assert (out / "curves.png").stat().st_size > 5000 and (out / "final.png").stat().st_size > 3000
    table = json.loads((out / "report.json").read_text())
    for row in table:
        finals = [summary(j)["eval/return_mean"] for j in jobs if row["label"] in j.name.replace(",", " ")]
        assert row["mean"] == sum(finals) / len(finals)


def test_report_rejects_missing_paths(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wm.report", str(tmp_path / "nope"), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no such path")
