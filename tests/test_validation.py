"""Invalid input: exit code 2, one readable 'error:' line naming the problem, no run dir content."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import train

CASES = [
    (["env=nope"], "unknown env option 'nope'; valid: "),
    (["agent=nope"], "unknown agent option 'nope'; valid:"),
    (["bogus=1"], "unknown key 'bogus'"),
    (["agent.bogus=1"], "unknown key 'agent.bogus'"),
    (["seed=abc"], "seed: must be an integer (got 'abc')"),
    (["agent=dqn", "model=none", "agent.lr=fast"], "agent.lr: must be a number (got 'fast')"),
    (["model.latent=foo"], "model.latent: must be one of categorical, gaussian (got 'foo')"),
    (["model.batch=0"], "model.batch: must be > 0 (got 0)"),
    (["model.deter=-5"], "model.deter: must be > 0 (got -5)"),
    (["agent.entropy=-1"], "agent.entropy: must be >= 0 (got -1.0)"),
    (["model.lr=nan"], "model.lr: must be finite (got nan)"),
    (["total_steps=-5"], "total_steps: must be > 0 (got -5)"),
    (["total_steps=0"], "total_steps: must be > 0 (got 0)"),
    (["eval.episodes=0"], "eval.episodes: must be > 0"),
    (["agent=dqn", "model=none", "agent.update.every=0"], "agent.update.every: must be > 0"),
    (["env.num_envs=0"], "env.num_envs: must be > 0"),
    (["device=cpu", "device.threads=-1"], "device.threads: must be >= 0"),
    (["env.id=NoSuchEnv-v0"], "env.id='NoSuchEnv-v0'"),
    (["resume=true"], "resume=true but"),
    (["model=none", "agent=dqn", "env.id=Pendulum-v1"], "agent=dqn takes discrete actions but Pendulum-v1 has continuous actions"),
    (["seed=1,2"], "a sweep needs --multirun"),
    (["model=hmm", "data=tracking", "agent=none"], "data=tracking model=hmm agent=none: model=hmm needs"),
    (["model=hmm", "data=casino"], "takes no agent; use agent=none"),
    (["model=hmm", "agent=none"], "model=hmm learns from a dataset; valid data: cartpole_pixels_random, casino"),
    (["data=casino"], "data=casino feeds supervised models ("),
    (["data=casino"], "); model=rssm learns in an env: use data=none"),
    (["env=none"], "model=rssm learns in an environment; valid env: "),
]
CASES += [  # combinations a part refuses (its `refuse` hook), found before anything is built
    (["agent.actor_grad=dynamics"], "agent.actor_grad=dynamics needs continuous actions"),
    (["env=carracing", "model=mbpo", "agent=sac", "model.termination=never"], "model=mbpo needs vector observations"),
    (["data=moving_mnist", "model=convlstm", "agent=none", "model.patch=3"], "model.patch=3 must divide the frame"),
    (["data=moving_mnist", "model=convlstm", "agent=none", "data.size=16"], "data.size: must be >= 28"),
    (["experiment=dyna_cartpole", "agent.n_step=3"], "imagined transitions are one-step"),
]
CASES.append((["env.pixels=true", "env.proprio=state", "env.size=16", "model.decode_keys=[sound]"],
              "model.decode_keys: 'sound' is not an observation key of this env (keys: image, vector)"))
CASES.append((["agent=actor_critic", "model=none"], "agent=actor_critic acts through a learned world model"))
CASES.append((["env=carracing", "model=none", "agent=dqn"], "agent=dqn takes discrete actions but CarRacing-v3"))
if not torch.cuda.is_available():
    CASES.append((["device=cuda"], "device=cuda is not available on this machine; valid here: auto, cpu"))


@pytest.mark.parametrize("overrides,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_invalid_input_is_one_line_and_writes_nothing(overrides, message, run_dir):
    proc = train(run_dir, *overrides, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not run_dir.exists()
