"""The intrinsic modules on their own: RND's target stays fixed, ICM's inverse model learns actions,
rewards are normalised as configured, and the replay scan counts visits, episodes and the first goal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from wm.core.stats import RunningMeanStd
from wm.data.replay import Replay
from wm.intrinsic.base import NoIntrinsic
from wm.intrinsic.disagreement import Disagreement, DisagreementConfig
from wm.intrinsic.icm import ICM, ICMConfig
from wm.intrinsic.rnd import RND, RNDConfig

OBS = gym.spaces.Box(np.array([-1.2, -0.07], np.float32), np.array([0.6, 0.07], np.float32))
ACT = gym.spaces.Discrete(3)


def batch(n: int, rng: np.random.Generator, terminal: bool = False) -> dict[str, torch.Tensor]:
    obs = rng.uniform(OBS.low, OBS.high, (n, 2)).astype(np.float32)
    action = rng.integers(3, size=n)
    return {"obs": torch.as_tensor(obs), "action": torch.as_tensor(action),
            "reward": -torch.ones(n), "next_obs": torch.as_tensor(obs + 0.01),
            "terminal": torch.full((n,), terminal)}


def test_rnd_target_stays_fixed_while_the_predictor_learns():
    torch.manual_seed(0)
    rnd = RND(RNDConfig(obs_norm=False, hidden=[64], lr=3e-3), OBS, ACT)
    target = {k: v.clone() for k, v in rnd.target.state_dict().items()}
    predictor = {k: v.clone() for k, v in rnd.predictor.state_dict().items()}
    rng = np.random.default_rng(0)
    fixed = batch(256, rng)
    before = rnd.error(fixed["next_obs"]).mean().item()
    for _ in range(100):
        rnd(batch(64, rng))
    assert all(torch.equal(v, rnd.target.state_dict()[k]) for k, v in target.items())
    assert not all(torch.equal(v, rnd.predictor.state_dict()[k]) for k, v in predictor.items())
    assert all(not p.requires_grad for p in rnd.target.parameters())
    assert rnd.error(fixed["next_obs"]).mean().item() < 0.5 * before  # seen states stop paying


def test_rnd_pays_more_for_states_off_the_data():
    """Trained on the valley a random MountainCar policy stays in, RND's error elsewhere is far larger."""
    torch.manual_seed(0)
    rnd = RND(RNDConfig(lr=3e-3), OBS, ACT)
    rng = np.random.default_rng(0)
    valley = lambda n: torch.as_tensor(rng.uniform([-0.7, -0.02], [-0.3, 0.02], (n, 2)), dtype=torch.float32)
    rnd.obs_rms.update(valley(4096))
    for _ in range(300):
        rnd.loss(None, None, valley(128)).backward()
        rnd.optim.step()
        rnd.optim.zero_grad()
    elsewhere = torch.as_tensor(rng.uniform([0.0, 0.03], [0.6, 0.07], (512, 2)), dtype=torch.float32)
    assert rnd.error(elsewhere).mean() > 20 * rnd.error(valley(512)).mean()


def test_icm_inverse_model_learns_actions_on_a_toy_env():
    """Toy dynamics on a line: action 0 moves left, 1 stays, 2 moves right; chance accuracy is 1/3."""
    torch.manual_seed(0)
    space = gym.spaces.Box(-10, 10, (1,), np.float32)
    icm = ICM(ICMConfig(obs_norm=False, hidden=[64], lr=3e-3), space, ACT)
    rng = np.random.default_rng(0)

    def toy(n):
        obs = rng.uniform(-5, 5, (n, 1)).astype(np.float32)
        action = rng.integers(3, size=n)
        return {"obs": torch.as_tensor(obs), "action": torch.as_tensor(action), "reward": torch.zeros(n),
                "next_obs": torch.as_tensor(obs + (action[:, None] - 1.0).astype(np.float32)),
                "terminal": torch.zeros(n, dtype=torch.bool)}

    for _ in range(200):
        icm(toy(128))
    test = toy(1000)
    _, _, logits = icm.parts(test["obs"], test["action"], test["next_obs"])
    accuracy = (logits.argmax(-1) == test["action"]).float().mean().item()
    assert accuracy > 0.95, accuracy


def test_running_mean_std_matches_numpy_over_batches():
    rms, rng = RunningMeanStd((2,)), np.random.default_rng(1)
    data = [rng.normal([3.0, -1.0], [2.0, 0.5], (n, 2)) for n in (7, 100, 33)]
    for x in data:
        rms.update(torch.as_tensor(x))
    allx = np.concatenate(data)
    np.testing.assert_allclose(rms.mean.numpy(), allx.mean(0), rtol=1e-3)
    np.testing.assert_allclose(rms.var.numpy(), allx.var(0), rtol=1e-3)


@pytest.mark.parametrize("normalize", ["std", "none"])
def test_intrinsic_rewards_are_normalised_as_configured(normalize):
    torch.manual_seed(0)
    rnd = RND(RNDConfig(scale=0.5, normalize=normalize, lr=1e-12), OBS, ACT)  # lr ~0: raw errors stay put
    rng = np.random.default_rng(0)
    for _ in range(50):
        rnd(batch(256, rng))
    b = batch(4096, rng)
    raw = rnd.error(b["next_obs"]).detach()
    bonus = rnd(b)["reward"] - b["reward"]
    if normalize == "none":
        torch.testing.assert_close(bonus, 0.5 * raw, rtol=1e-4, atol=1e-6)
    else:  # divided by the running std of raw rewards: the bonus' std is ~scale
        torch.testing.assert_close(bonus, 0.5 * raw / rnd.reward_rms.std.float(), rtol=1e-4, atol=1e-6)
        assert bonus.std().item() == pytest.approx(0.5, rel=0.1)


def test_episodic_keeps_terminals_and_non_episodic_clears_them():
    rng = np.random.default_rng(0)
    b = batch(8, rng, terminal=True)
    assert Disagreement(DisagreementConfig(episodic=True), OBS, ACT)(b)["terminal"].all()
    assert not Disagreement(DisagreementConfig(episodic=False), OBS, ACT)(b)["terminal"].any()


def test_disagreement_is_high_off_the_data_and_low_on_it():
    torch.manual_seed(0)
    space = gym.spaces.Box(-10, 10, (1,), np.float32)
    dis = Disagreement(DisagreementConfig(obs_norm=False, hidden=[64], lr=3e-3), space, ACT)
    rng = np.random.default_rng(0)
    for _ in range(150):  # data only on [0, 1]
        obs = rng.uniform(0, 1, (128, 1)).astype(np.float32)
        dis({"obs": torch.as_tensor(obs), "action": torch.zeros(128, dtype=torch.long), "reward": torch.zeros(128),
             "next_obs": torch.as_tensor(obs * 2), "terminal": torch.zeros(128, dtype=torch.bool)})
    zeros = torch.zeros(64, dtype=torch.long)
    seen = dis.raw_reward(torch.rand(64, 1), zeros, None).mean()
    unseen = dis.raw_reward(torch.rand(64, 1) + 6, zeros, None).mean()
    assert unseen > 10 * seen


def test_observe_counts_visits_episodes_and_the_first_goal():
    """Two envs in lockstep; env 1 reaches a terminal on its 3rd step (global step 6)."""
    replay = Replay(100, 2, OBS, ACT)
    module = NoIntrinsic(NoIntrinsic.Config(coverage_bins=4), OBS, ACT)
    low = OBS.low

    def add(obs, reward, first=(False, False), last=(False, False), terminal=(False, False)):
        replay.add(np.arange(2), obs=np.array(obs, np.float32), action=np.zeros(2, np.int64),
                   reward=np.array(reward, np.float32), is_first=np.array(first), is_last=np.array(last),
                   is_terminal=np.array(terminal))

    add([low, low], [0, 0], first=(True, True))
    add([low, low], [-1, -1])
    module.observe(replay)
    add([low, OBS.high - 1e-4], [-1, -1])
    add([low, OBS.high - 1e-4], [-1, -1], last=(False, True), terminal=(False, True))
    stats = module.observe(replay)
    assert module.first_goal_step == 6
    assert stats["intrinsic/first_goal_step"] == 6
    assert stats["intrinsic/episode_extrinsic_return"] == -3  # env 1's episode: three -1 steps
    assert stats["intrinsic/episode_intrinsic_return"] == 0
    assert module.visits.counts.sum() == 8 and module.visits.counts[0, 0] == 6 and module.visits.counts[-1, -1] == 2
    assert stats["intrinsic/coverage"] == pytest.approx(2 / 16)
    assert module.observe(replay)["intrinsic/coverage"] == pytest.approx(2 / 16)  # nothing new: no recount
    assert module.visits.counts.sum() == 8


@pytest.mark.parametrize("cls,cfg", [(RND, RNDConfig), (ICM, ICMConfig), (Disagreement, DisagreementConfig)])
def test_checkpoint_round_trip_restores_networks_optimizer_normalisers_and_counts(cls, cfg):
    """What the loop's checkpoint does with the agent (DQN state_dict holds the module): a copy built
    fresh and loaded from it continues exactly like the original."""
    from wm.agents.dqn import DQN, DQNConfig

    def build(seed):
        torch.manual_seed(seed)
        return DQN(DQNConfig(hidden=[16], batch_size=32), OBS, ACT, intrinsic=cls(cfg(hidden=[16]), OBS, ACT))

    replay, rng = Replay(500, 2, OBS, ACT), np.random.default_rng(0)
    for t in range(100):
        replay.add(np.arange(2), obs=rng.uniform(OBS.low, OBS.high, (2, 2)).astype(np.float32),
                   action=rng.integers(3, size=2), reward=-np.ones(2, np.float32), is_first=np.full(2, t == 0),
                   is_last=np.full(2, t == 60), is_terminal=np.array([False, t == 60]))
    a = build(0)
    for _ in range(5):
        a.train_step(replay, 0)
    b = build(1)
    b.load_state_dict(a.state_dict())
    assert b.intrinsic.first_goal_step == a.intrinsic.first_goal_step == 120  # 60th step of 2 lockstep envs
    np.testing.assert_array_equal(b.intrinsic.visits.counts, a.intrinsic.visits.counts)
    replay_b = Replay(500, 2, OBS, ACT)
    replay_b.load_state_dict(replay.state_dict())
    torch.manual_seed(5)
    stats_a = a.train_step(replay, 0)
    torch.manual_seed(5)
    stats_b = b.train_step(replay_b, 0)
    assert stats_a == stats_b


def test_norm_window_lets_old_rewards_fade():
    """Large early errors, then small ones: a windowed std follows the recent scale, a full-history one
    stays dominated by the start (which shrank RND's MountainCar bonus to ~0.01 of its configured scale)."""
    rng = np.random.default_rng(0)
    full, windowed = RunningMeanStd(), RunningMeanStd(window=2000)
    for scale in [100.0] * 50 + [1.0] * 300:
        x = torch.as_tensor(rng.normal(0, scale, 128))
        full.update(x)
        windowed.update(x)
    assert windowed.std.item() == pytest.approx(1.0, rel=0.15)
    assert full.std.item() > 30


def two_head_dqn():
    from wm.agents.dqn import DQN, DQNConfig

    torch.manual_seed(0)
    cfg = DQNConfig(hidden=[8], batch_size=4, gamma=0.5, eps_start=0.0, eps_end=0.0, intrinsic_head=True)
    agent = DQN(cfg, OBS, ACT, intrinsic=RND(RNDConfig(hidden=[8], episodic=False), OBS, ACT))
    agent.env_step = 0
    last = agent.q[-1]
    with torch.no_grad():  # constant Q: exploitation head prefers action 0, exploration head action 2
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 5.0]))
    agent.q_target.load_state_dict(agent.q.state_dict())
    return agent


def test_intrinsic_head_explores_with_one_head_and_evaluates_the_other():
    agent = two_head_dqn()
    obs = np.zeros((3, 2), np.float32)
    assert agent.q_values(torch.as_tensor(obs)).shape == (3, 2, 3)
    assert agent.act(obs, None, None, explore=False)[0].tolist() == [0, 0, 0]
    assert agent.act(obs, None, None, explore=True)[0].tolist() == [2, 2, 2]


def test_intrinsic_head_targets_keep_rewards_and_terminals_apart():
    """Exploitation head: env reward, stops at the env's terminal; exploration head (non-episodic): env reward
    + bonus, bootstraps through it. Each head bootstraps at its own greedy action (gamma 0.5, maxima 1 and 5)."""
    agent = two_head_dqn()
    rng = np.random.default_rng(0)
    b = agent.intrinsic(batch(4, rng, terminal=True))
    assert b["terminal_ext"].all() and not b["terminal"].any()
    v_next = agent.next_value(b["next_obs"])
    torch.testing.assert_close(v_next, torch.tensor([[1.0, 5.0]] * 4))
    target = agent._two_head_target(b, v_next)
    torch.testing.assert_close(target[:, 0], b["reward_ext"])
    torch.testing.assert_close(target[:, 1], b["reward_ext"] + b["bonus"] + 0.5 * 5.0)


def test_replay_n_step_returns_stop_at_episode_ends_and_at_the_newest_row():
    from wm.data.replay import Replay

    space = gym.spaces.Box(-100, 100, (1,), np.float32)
    replay = Replay(50, 1, space, ACT, seed=0)
    # one env: reset row 0, steps 1-3 (3 is a terminal), reset row 4, steps 5-6 (6 is the newest row)
    rows = [(0, True, False, False), (1, False, False, False), (2, False, False, False), (4, False, True, True),
            (0, True, False, False), (8, False, False, False), (16, False, False, False)]
    for i, (reward, first, last, terminal) in enumerate(rows):
        replay.add(np.array([0]), obs=np.array([[float(i)]], np.float32), action=np.zeros(1, np.int64),
                   reward=np.array([reward], np.float32), is_first=np.array([first]),
                   is_last=np.array([last]), is_terminal=np.array([terminal]))
    out = replay._n_step(np.zeros(4, np.int64), np.array([1, 2, 5, 6]), n=3, gamma=0.5)
    torch.testing.assert_close(out["return_n"], torch.tensor([1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 8 + 0.5 * 16, 16.0]))
    torch.testing.assert_close(out["obs_n"][:, 0], torch.tensor([3.0, 3.0, 6.0, 6.0]))
    assert out["terminal_n"].tolist() == [True, True, False, False]
    torch.testing.assert_close(out["discount_n"], torch.tensor([0.125, 0.25, 0.25, 0.5]))
    sampled = replay.sample_transitions(64, n_step=3, gamma=0.5)
    assert {"return_n", "obs_n", "terminal_n", "discount_n"} <= set(sampled)


def test_return_normalisation_divides_by_the_std_of_the_discounted_intrinsic_return():
    """normalize: return (Burda et al.): observe() runs each env's discounted intrinsic return over the rows
    as they arrive (never reset) and the bonus is scale * raw / std(those returns)."""
    torch.manual_seed(0)
    cfg = RNDConfig(scale=0.5, normalize="return", norm_gamma=0.9, lr=1e-12, hidden=[16])
    rnd, rng = RND(cfg, OBS, ACT), np.random.default_rng(0)
    replay = Replay(200, 1, OBS, ACT)
    obs = rng.uniform(OBS.low, OBS.high, (60, 2)).astype(np.float32)
    for t in range(60):
        replay.add(np.array([0]), obs=obs[t:t + 1], action=np.zeros(1, np.int64), reward=np.zeros(1, np.float32),
                   is_first=np.array([t == 0]), is_last=np.array([t == 30]), is_terminal=np.array([False]))
    rnd.observe(replay)
    raw = rnd.raw_reward(torch.as_tensor(obs[:-1]), torch.zeros(59), torch.as_tensor(obs[1:])).detach().numpy()
    returns = np.array([sum(0.9 ** (i - j) * raw[j] for j in range(i + 1)) for i in range(len(raw))])
    np.testing.assert_allclose(rnd.reward_rms.std.item(), returns.std(), rtol=1e-3)
    b = batch(32, rng)
    bonus = rnd(b)["bonus"]
    torch.testing.assert_close(bonus, 0.5 * rnd.error(b["next_obs"]).detach() / rnd.reward_rms.std.float())
