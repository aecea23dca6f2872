"""The evolution loop (World Models) through train.py: every stage at a tiny budget, per-stage resume after
SIGKILL (ending exactly as an uninterrupted run), products taken from an earlier run, and validation."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch

from tests.conftest import compose_cfg, metrics, summary, train
from wm import checkpoint
from wm.errors import ConfigError
from wm.loops.evolution import load_product
from wm.validate import validate

# CartPole from pixels with tiny nets: seconds per stage
CP = ["experiment=worldmodels_cartpole_pixels", "total_steps=400", "model.latent=8", "model.rnn.hidden=16",
      "model.vae.batch=8", "model.vae.max_steps=8", "model.rnn.max_steps=8", "model.rnn.batch=4",
      "model.stage_checkpoint_every=2", "model.rollouts.workers=1", "agent.population=4", "agent.rollouts=1",
      "agent.generations=3", "agent.reeval_every=2", "agent.reeval_rollouts=2", "eval.episodes=2", "eval.envs=2"]
STAGES = ["rollouts", "vae", "mdnrnn", "controller", "test"]


def stage(run_dir):
    try:
        st = checkpoint.load(run_dir)
    except (FileNotFoundError, EOFError, RuntimeError, ConfigError):
        return None, None
    return st["stage"], st["sub"]


def results(run_dir):
    keep = ("controller/", "eval/return", "rollouts/steps", "rollouts/episodes", "vae/loss", "rnn/loss")
    return [{k: v for k, v in r.items() if k.startswith(keep) and "seconds" not in k and "per_s" not in k}
            for r in metrics(run_dir) if any(k.startswith(keep) for k in r)]


def test_carracing_runs_every_stage_at_a_tiny_budget(run_dir):
    proc = train(run_dir, "env=carracing", "model=vae_rnn", "agent=cmaes", "total_steps=200",
                 "+env.max_episode_steps=60", "model.vae.max_steps=4", "model.rnn.max_steps=4",
                 "agent.population=4", "agent.rollouts=1", "eval.episodes=1", "eval.envs=1", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(run_dir)
    assert s["status"] == "completed" and 0 < s["steps"] <= 200  # total_steps bounds every real env step
    for name in STAGES:
        assert (run_dir / "stages" / f"{name}.json").exists(), name
    for product in ("vae.pt", "mdnrnn.pt", "controller.pt", "media/vae_reconstructions.png", "videos/dream.mp4"):
        assert (run_dir / product).exists(), product
    assert list((run_dir / "rollouts").glob("ep_*.npz"))
    rows = metrics(run_dir)
    gens = [r for r in rows if "controller/fitness_best" in r]
    assert gens and all({"controller/fitness_mean", "controller/fitness_std"} <= r.keys() for r in gens)
    assert "eval/return_mean" in s


@pytest.mark.slow
def test_carracing_preset_at_total_steps_4000(run_dir):
    proc = train(run_dir, "experiment=worldmodels_carracing", "total_steps=4000", timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(run_dir)
    assert s["status"] == "completed" and s["steps"] <= 4000
    assert all((run_dir / "stages" / f"{n}.json").exists() for n in STAGES)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    proc = train(run_dir, *CP, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def kill_in(run_dir, overrides, target):
    """Run until a checkpoint taken inside stage ``target``, then SIGKILL."""
    proc = train(run_dir, *overrides, background=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        name, sub = stage(run_dir)
        if name == target and sub is not None:
            break
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = {n for n in STAGES if (run_dir / "stages" / f"{n}.json").exists()}
    assert done == set(STAGES[:STAGES.index(target)])


def test_killed_in_any_stage_resumes_there_and_ends_as_uninterrupted(full, run_dir):
    kill_in(run_dir, CP, "vae")  # mid-V: killed between two of its checkpoints
    kill_in(run_dir, [*CP, "resume=true"], "controller")  # the resumed run, killed again mid-CMA-ES
    resumed = train(run_dir, *CP, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout + resumed.stderr
    assert "resuming in stage controller" in out
    for earlier in STAGES[:3]:
        assert f"stage {earlier}\n" not in out  # finished stages are not run again
    assert summary(run_dir)["status"] == "completed"
    assert results(run_dir) == results(full)  # same losses, fitness per generation and test score


def test_products_from_an_earlier_run_are_reused(full, run_dir):
    proc = train(run_dir, *CP, f"model.stages.rollouts_from={full}", f"model.stages.vae_from={full}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(run_dir)
    assert any("rollouts/reused_steps" in r for r in rows)
    assert not any("vae/loss" in r for r in rows) and any("rnn/loss" in r for r in rows)
    assert not (run_dir / "rollouts").exists()
    assert summary(run_dir)["status"] == "completed"


def test_gymnasium_test_takes_v_and_m_from_where_the_run_took_them(full, run_dir):
    """bench.worldmodels' 100-track test rebuilds the run's V and M from ``model.stages.*_from`` (the dream
    controller's run dir holds neither): on the loop's own test seeds it must score what the loop's test scored."""
    from bench.worldmodels import gymnasium_test

    proc = train(run_dir, *CP, f"model.stages.rollouts_from={full}", f"model.stages.mdnrnn_from={full}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (run_dir / "vae.pt").exists() and not (run_dir / "mdnrnn.pt").exists()
    loop_test = json.loads((run_dir / "test_returns.json").read_text())["returns"]
    assert gymnasium_test(run_dir, episodes=2, wave=2)["returns"] == pytest.approx(loop_test, abs=1e-6)


class Planted:
    """A pickled object whose unpickling would create ``path``: stands for code in a shared run dir."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def plant(run_dir, marker):
    """A finished-looking run dir whose vae.pt carries a Planted object beside real weights."""
    (run_dir / "stages").mkdir(parents=True)
    torch.save({"vae": {"w": torch.zeros(2)}, "opt": Planted(marker)}, run_dir / "vae.pt")
    return run_dir / "vae.pt"


def test_a_product_with_a_foreign_object_is_refused_and_nothing_of_it_runs(tmp_path):
    path = plant(tmp_path / "shared", tmp_path / "marker")
    with pytest.raises(ConfigError, match=f"^{path}: not a safe stage product") as e:
        load_product(path)
    assert "\n" not in str(e.value) and not (tmp_path / "marker").exists()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigError, match=f"^{truncated}: not a safe stage product"):
        load_product(truncated)


def test_vae_from_a_planted_run_dir_exits_2_in_one_line(full, run_dir, tmp_path):
    path = plant(tmp_path / "shared", tmp_path / "marker")
    proc = train(run_dir, *CP, f"model.stages.rollouts_from={full}", f"model.stages.vae_from={path.parent}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"error: {path}: not a safe stage product" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize("overrides, message", [
    (["env=carracing", "model=rssm", "agent=cmaes"], "use model=vae_rnn"),
    (["env=carracing", "model=vae_rnn", "agent=actor_critic"], "trained by the evolution loop; valid: agent=cmaes"),
    (["env=cartpole", "model=vae_rnn", "agent=cmaes"], "needs 64x64 RGB pixel observations"),
    (["experiment=worldmodels_cartpole_pixels", "model.stages.rollouts_from=/nonexistent"], "does not exist"),
    (["experiment=worldmodels_cartpole_pixels", "agent.inputs=h"], "must be one of zh, z"),
    (["experiment=worldmodels_cartpole_pixels", "agent.population=1"], "must be >= 2"),
])
def test_bad_combinations_are_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(overrides), tmp_path)
