"""Scale-out launchers (the `launchers` extra): a 2-job sweep through Hydra's Ray launcher on a local Ray
instance. Slow (Ray starts a local cluster), so not in `make test`:  pytest -m slow tests/test_launchers.py"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY, summary


@pytest.mark.slow
def test_ray_launcher_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[launchers]'")
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "train.py", "-m", "hydra/launcher=ray", "seed=0,1", *TINY,
                           "device.threads=1", "progress=false", f"hydra.sweep.dir={sweep_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 2
    assert all(summary(j)["status"] == "completed" and summary(j)["steps"] == 600 for j in jobs)
