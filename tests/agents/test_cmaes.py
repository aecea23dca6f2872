"""The World Models controller and its CMA-ES: action mapping, resumable ES, dreams (real-env evaluation:
tests/loops/test_population.py)."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from wm.agents.cmaes import CMAES, CMAESConfig, es_to_tree
from wm.envs.factory import EnvConfig, make_env
from wm.errors import ConfigError
from wm.models.vae_rnn import VAERNN, VAERNNConfig

CARTPOLE = EnvConfig(id="CartPole-v1", pixels=True, size=64, action_repeat=2)
CARRACING_BOX = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))


def build(env_cfg=CARTPOLE, **kw):
    env = make_env(env_cfg)
    obs, act = env.observation_space, env.action_space
    env.close()
    mcfg = VAERNNConfig(latent=8)
    mcfg.rnn.hidden = 16
    torch.manual_seed(0)
    model = VAERNN(mcfg, obs, act, torch.device("cpu"))
    return CMAES(CMAESConfig(**kw), obs, act, model, torch.device("cpu"))


def with_space(agent, space):
    agent.act_space, agent.out_dim = space, 3
    agent.dim = 3 * agent.in_dim + 3
    return agent


@pytest.mark.parametrize("box", [CARRACING_BOX, gym.spaces.Box(np.array([-2, 0, 1], np.float32),
                                                                  np.array([2, 3, 5], np.float32))])
def test_continuous_actions_stay_in_the_box(box):
    agent = with_space(build(), box)
    params = torch.randn(50, agent.dim) * 10
    a, _ = agent.actions(params, torch.randn(50, agent.in_dim))
    assert a.shape == (50, 3) and box.contains(a[0])
    assert (a >= box.low).all() and (a <= box.high).all()
    assert agent.in_dim == 8 + 16 and build(inputs="z").in_dim == 8  # [z, h] vs z only
    if box is not CARRACING_BOX:  # any other box: low + (tanh + 1) / 2 * (high - low), the middle at zero
        zero, _ = agent.actions(torch.zeros(1, agent.dim), torch.randn(1, agent.in_dim))
        assert np.allclose(zero, (box.low + box.high) / 2)


def paper_actions(params: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The paper's controller (Ha & Schmidhuber's CarRacing code): a = W x + b; steer tanh, gas (tanh + 1) / 2,
    brake clip(tanh, 0, 1)."""
    out = []
    for p, x in zip(params, feats):
        W, b = p[: 3 * len(x)].reshape(3, len(x)), p[3 * len(x):]
        a = np.tanh(W @ x + b)
        out.append([a[0], (a[1] + 1) / 2, np.clip(a[2], 0, 1)])
    return np.array(out)


def test_carracing_actions_are_the_papers_mapping():
    agent = with_space(build(), CARRACING_BOX)
    feats = torch.randn(20, agent.in_dim)
    a, enc = agent.actions(torch.zeros(20, agent.dim), feats)
    assert np.allclose(a, [[0, 0.5, 0]] * 20)  # zero parameters: straight on, half gas, no brake
    params = torch.randn(20, agent.dim)
    a, enc = agent.actions(params, feats)
    assert np.allclose(a, paper_actions(params.double().numpy(), feats.double().numpy()), atol=1e-5)
    assert np.array_equal(a, enc.numpy()) and (a[:, 2] == 0).any() and (a[:, 2] > 0).any()


def es_run(agent, generations: int) -> list[np.ndarray]:
    """``generations`` asks and tells on a fixed function; the candidates asked."""
    asked = []
    for _ in range(generations):
        asked.append(agent.ask())
        agent.tell(asked[-1], -((asked[-1] - 0.5) ** 2).sum(1))
    return asked


def test_es_state_reloaded_with_weights_only_continues_identically():
    agent = build(population=6)
    agent.start(seed=3)
    es_run(agent, 3)
    buf = io.BytesIO()
    torch.save({"es": agent.es_state()}, buf)
    rng = np.random.get_state()
    expected = es_run(agent, 5)
    np.random.seed(123)  # whatever the global RNG holds now: the saved state brings cma's own back
    agent.load_es_state(torch.load(io.BytesIO(buf.getvalue()), weights_only=True)["es"])
    assert np.array_equal(np.random.get_state()[1], rng[1])
    got = es_run(agent, 5)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


class Marker:
    """Creates a file when called: stands for code that must never run from a loaded state."""

    def __init__(self, path):
        self.path = path

    def __call__(self, *args):
        open(self.path, "w").close()


@pytest.mark.parametrize("attack", ["class", "function", "string", "method"])
def test_es_state_outside_the_allow_list_is_refused(tmp_path, attack):
    agent = build(population=4)
    agent.start(seed=0)
    tree = es_to_tree(agent.es)
    if attack == "class":  # an object of a class outside the allow-list
        tree["attrs"]["sm"]["cls"] = "subprocess.Popen"
    elif attack == "function":
        tree["attrs"]["sm"]["attrs"]["eigenmethod"] = {"$": "fn", "name": "os.system"}
    elif attack == "string":  # cma evaluates option strings: a new one could be code
        tree["attrs"]["opts"]["items"].append(["CMA_active", f"open({str(tmp_path / 'marker')!r}, 'w')"])
    else:
        tree["attrs"]["sm"]["attrs"]["randn"] = {"$": "method", "id": 10**6, "name": "__init__",
                                                 "self": {"$": "ref", "id": 0}}
    with pytest.raises(ConfigError, match="CMA-ES state: .* is not allowed"):
        agent.load_es_state(tree)
    assert not (tmp_path / "marker").exists()


def test_dream_is_batched_and_reproducible():
    agent = build(dream_horizon=30)
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), np.uint8)
    agent.model.latents = [{"mu": agent.model.encode(frames).numpy(), "logvar": np.zeros((4, 8), np.float32)}]
    params = np.random.default_rng(1).normal(0, 0.5, (5, agent.dim))
    r1, s1 = agent.evaluate_dream(params, seed=4)
    r2, s2 = agent.evaluate_dream(params, seed=4)
    assert r1.shape == (5,) and np.array_equal(r1, r2) and s1 == s2 and 0 < s1 <= 5 * 30


def test_the_agent_steps_no_env():
    """Real-env stepping is the evolution loop's (wm/loops/population.py): the agent module builds no env."""
    from tests.test_layers import WM, imports

    mods = [m for _, m in imports(WM / "agents" / "cmaes.py")]
    assert not [m for m in mods if m.startswith(("wm.envs", "gymnasium.vector", "ray"))]
