"""Checkpoints a run can trust: the previous one is kept beside the latest, a damaged latest falls back to
it, and loading never runs code a checkpoint file carries (torch.load with weights_only=True)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, metrics, summary, train
from wm import checkpoint
from wm.errors import ConfigError

# checkpoints at ~250 and ~500 and a final one at 600: previous.pt is the one at ~500
RUN = [*TINY, "checkpoint.every=250"]


class Payload:
    """Unpickling this creates a file: the proof that a checkpoint's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = train(run, *RUN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_save_keeps_the_previous_checkpoint(tmp_path):
    checkpoint.save(tmp_path, {"step": 1})
    assert not (tmp_path / checkpoint.PREVIOUS).exists()
    checkpoint.save(tmp_path, {"step": 2})
    assert checkpoint.load_file(tmp_path / checkpoint.LATEST)["step"] == 2
    assert checkpoint.load_file(tmp_path / checkpoint.PREVIOUS)["step"] == 1


def test_a_run_keeps_latest_and_previous(finished):
    latest = checkpoint.load_file(finished / checkpoint.LATEST)
    previous = checkpoint.load_file(finished / checkpoint.PREVIOUS)
    assert latest["step"] == 600 and 250 <= previous["step"] < 600


def test_resume_after_truncated_latest_continues_from_previous(copy, finished):
    truncate(copy / checkpoint.LATEST)
    previous_step = checkpoint.load_file(copy / checkpoint.PREVIOUS)["step"]
    proc = train(copy, *RUN, "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert f"{copy / checkpoint.LATEST} is damaged" in out and f"resuming from {copy / checkpoint.PREVIOUS}" in out
    assert f"from step {previous_step}" in out
    assert summary(copy)["status"] == "completed" and summary(copy)["steps"] == 600
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert drop(metrics(copy)) == drop(metrics(finished))  # exact: what the lost steps logged is logged again


@pytest.mark.parametrize("damage", ["truncated", "not a torch file"])
def test_resume_with_no_good_checkpoint_is_refused_in_one_line(copy, damage):
    truncate(copy / checkpoint.PREVIOUS)
    if damage == "truncated":
        truncate(copy / checkpoint.LATEST)
    else:
        (copy / checkpoint.LATEST).write_text("these are not the weights you are looking for\n")
    before = (copy / "metrics.jsonl").read_text()
    proc = train(copy, *RUN, "resume=true")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert str(copy / checkpoint.LATEST) in line and str(copy / checkpoint.PREVIOUS) in line
    assert "no good checkpoint" in line
    assert (copy / "metrics.jsonl").read_text() == before  # nothing was touched


def test_the_payload_would_run_under_a_plain_load(tmp_path):
    """The test below means something: a plain torch.load of this file does run its code."""
    marker = tmp_path / "ran"
    torch.save({"step": Payload(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_a_pickled_object_outside_the_allow_list_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"step": Payload(marker)}, path)
    with pytest.raises(ConfigError, match="allow-list"):
        checkpoint.load_file(path)
    assert not marker.exists()


def test_resume_from_a_checkpoint_carrying_code_is_refused_and_runs_nothing(copy, tmp_path):
    marker = tmp_path / "ran"
    torch.save({"step": Payload(marker)}, copy / checkpoint.LATEST)
    (copy / checkpoint.PREVIOUS).unlink()
    proc = train(copy, *RUN, "resume=true")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert f"{copy / checkpoint.LATEST} was refused" in line and "allow-list" in line and "open)" in line  # names the global: io.open
    assert not marker.exists()


def test_numpy_state_loads_under_weights_only(tmp_path):
    import random

    import numpy as np

    state = {"rng": checkpoint.rng_state(), "obs": np.zeros((2, 3), np.float32), "mask": np.ones(2, bool),
             "scalar": np.float64(1.5), "bitgen": np.random.default_rng(0).bit_generator.state,
             "python": random.Random(0).getstate()}
    checkpoint.save(tmp_path, state)
    back = checkpoint.load_file(tmp_path / checkpoint.LATEST)
    assert back["obs"].dtype == np.float32 and back["mask"].dtype == bool and back["scalar"] == 1.5
    checkpoint.set_rng_state(back["rng"])
