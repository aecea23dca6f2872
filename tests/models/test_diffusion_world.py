"""model=diffusion_world and agent=frame_actor_critic (DIAMOND's world model and agent): the replay windows the
denoiser trains on, the reward / end model, imagination shapes, that the agent's update never moves the world
model, acting, refusals and exact resume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.conftest import assert_resumes_exactly, metrics, refused, train
from wm.agents.frame_actor_critic import FrameActorCritic
from wm.config import typed
from wm.data.replay import Replay
from wm.models.diffusion_world import DiffusionWorld, episode_only

SMALL_MODEL = {"cond_frames": 2, "channels": [4, 8], "cond_dim": 16, "mid_attention": False, "batch_size": 8,
               "reward_sequences": 4, "reward_length": 6, "reward_depth": 4, "reward_hidden": 16}
SMALL_AGENT = {"starts": 4, "horizon": 3, "depth": 4, "hidden": 16}
OBS = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)


def build(act_space=None, **model):
    act_space = act_space or gym.spaces.Discrete(2)
    torch.manual_seed(0)
    m = DiffusionWorld(typed(DiffusionWorld, {**SMALL_MODEL, **model}, "model"), OBS, act_space)
    return m, FrameActorCritic(typed(FrameActorCritic, SMALL_AGENT, "agent"), OBS, act_space, m)


def numbered_replay(rows: int = 24, starts=(0, 7)) -> Replay:
    """One env; frame t is uniformly 10 t + 5, action t = t % 2 (of two), episodes start at ``starts``."""
    r = Replay(1000, 1, OBS, gym.spaces.Discrete(2), seed=0)
    for t in range(rows):
        r.add(np.array([0]), obs=np.full((1, *OBS.shape), 10 * t + 5, np.uint8), action=np.array([t % 2]),
              reward=np.array([1.0], np.float32), is_first=np.array([t in starts]), is_last=np.array([t + 1 in starts]),
              is_terminal=np.zeros(1, bool))
    return r


def test_episode_only_blanks_rows_before_the_last_start():
    first = torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 1]], dtype=torch.bool)
    assert episode_only(first).tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]]


def test_denoiser_windows_condition_on_the_frames_before_and_the_actions_after_them(monkeypatch):
    m, _ = build()
    seen = {}

    def capture(target, context, actions, generator):
        seen.update(target=target, context=context, actions=actions)
        return target.sum() * 0

    monkeypatch.setattr(m.frames, "denoising_loss", capture)
    replay = numbered_replay()

    def row(x: torch.Tensor) -> torch.Tensor:  # a frame's value in [-1, 1] -> the replay row it came from
        return torch.round((x[:, 0, 0, 0] + 1) * 127.5 - 5) / 10

    for _ in range(20):
        m.denoiser_loss(replay)
        t = row(seen["target"]).long()
        assert not any(int(x) in (0, 7) for x in t)  # a target that starts an episode carries no loss
        for i, ti in enumerate(t.tolist()):
            start = 7 if ti > 7 else 0
            for j, src in enumerate(range(ti - 2, ti)):  # k = 2 frames t-2, t-1; actions of rows t-1, t
                frame, action = seen["context"][i, j], seen["actions"][i, j]
                if src < start:  # before the episode: blank frame and action
                    assert frame.abs().max() == 0 and action.abs().max() == 0
                else:
                    assert row(frame[None])[0] == src
                    assert action.argmax().item() == (src + 1) % 2 and action.sum() == 1


def test_reward_model_learns_the_terminal_frame():
    """Episodes of 6 rows, reward 1 each; the terminal row's frame is bright, the others dark noise: the
    termination head must find it."""
    m, _ = build(reward_lr=3e-3)
    rng = np.random.default_rng(0)
    r = Replay(2000, 1, OBS, gym.spaces.Discrete(2), seed=0)
    for t in range(300):
        term = t % 6 == 5
        frame = np.full(OBS.shape, 230, np.uint8) if term else rng.integers(0, 60, OBS.shape, dtype=np.uint8)
        r.add(np.array([0]), obs=frame[None], action=rng.integers(0, 2, 1), reward=np.array([float(t % 6 != 0)]),
              is_first=np.array([t % 6 == 0]), is_last=np.array([term]), is_terminal=np.array([term]))
    losses = []
    for _ in range(120):
        loss, stats = m.reward_loss(r)
        m.reward_opt.zero_grad()
        loss.backward()
        m.reward_opt.step()
        losses.append(stats["model/end_loss"])
    assert np.mean(losses[-10:]) < 0.2 < np.mean(losses[:10])
    start = m.start_states(r, 8)
    dark = torch.full((8, 3, 16, 16), -0.8)
    bright = torch.full((8, 3, 16, 16), 0.8)
    act = torch.nn.functional.one_hot(torch.zeros(8, dtype=torch.long), 2).float()
    _, end_dark, _ = m.rewards.step(start["reward_state"], dark, act, dark)
    _, end_bright, _ = m.rewards.step(start["reward_state"], dark, act, bright)
    assert torch.sigmoid(end_bright).min() > torch.sigmoid(end_dark).max()


@pytest.mark.parametrize("act_space", [gym.spaces.Discrete(2), gym.spaces.Box(-2.0, 2.0, (3,), np.float32)])
def test_imagination_trains_the_agent_and_never_the_world_model(act_space):
    m, agent = build(act_space)
    if isinstance(act_space, gym.spaces.Discrete):
        replay = numbered_replay()
    else:
        replay = Replay(1000, 1, OBS, act_space, seed=0)
        for t in range(24):
            replay.add(np.array([0]), obs=np.full((1, *OBS.shape), 10 * t, np.uint8),
                       action=np.full((1, 3), 0.5, np.float32), reward=np.array([1.0], np.float32),
                       is_first=np.array([t == 0]), is_last=np.zeros(1, bool), is_terminal=np.zeros(1, bool))
    assert agent.train_step(replay, 0) == {}  # nothing to imagine with before the model's first update
    assert m.train_step(replay, 0)["model/denoising_loss"] > 0
    start = m.start_states(replay, 4)
    assert start["frames"].shape == (4, 2, 3, 16, 16) and start["actions"].shape == (4, 2, m.act_dim)
    a = torch.zeros(4, m.act_dim)
    nxt, reward, p_end, _ = m.imagine_step(start["frames"], start["actions"], a, start["reward_state"])
    assert nxt.shape == (4, 3, 16, 16) and reward.shape == p_end.shape == (4,)
    assert nxt.abs().max() <= 1 and ((p_end >= 0) & (p_end <= 1)).all()
    world = {k: v.clone() for k, v in m.state_dict().items() if isinstance(v, torch.Tensor)}
    mine = [p.detach().clone() for p in agent.parameters()]
    stats = agent.train_step(replay, 0)
    assert all(np.isfinite(v) for v in stats.values())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in world.items())
    assert any(not torch.equal(a, b) for a, b in zip(mine, agent.parameters()))


def test_acting_gives_env_actions_and_resets_at_episode_starts():
    box = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)
    _, agent = build(box)
    obs = np.random.default_rng(0).integers(0, 255, (5, *OBS.shape), dtype=np.uint8)
    a, state = agent.act(obs, None, np.ones(5, bool), explore=True)
    assert a.shape == (5, 3) and np.all(np.abs(a) <= 2)
    _, again = agent.act(obs, state, np.ones(5, bool), explore=True)  # every env restarts: the state is forgotten
    assert torch.allclose(again[0], state[0])
    _, d = build()
    act, _ = d.act(obs, None, np.ones(5, bool), explore=False)
    assert act.shape == (5,) and set(act.tolist()) <= {0, 1}


def test_refusals(tmp_path):
    assert "pixel" in refused(tmp_path / "a", "model=diffusion_world", "agent=frame_actor_critic", "env=cartpole")
    assert "model=diffusion_world" in refused(tmp_path / "b", "model=rssm", "agent=frame_actor_critic",
                                              "env=cartpole_pixels")
    assert "power of two" in refused(tmp_path / "c", "experiment=diamond_cartpole_pixels", "env.size=20")
    assert "divisible" in refused(tmp_path / "d", "experiment=diamond_cartpole_pixels", "env.size=8",
                                  "model.channels=[4,4,4,4,4]")


TINY_DIAMOND = ["experiment=diamond_cartpole_pixels", "env.size=16", "env.num_envs=2", "total_steps=60",
                "eval.every=60", "eval.episodes=1", "eval.envs=1", "checkpoint.every=40", "log_every=20",
                "agent.prefill=20", "model.update.start=20", "model.update.every=10", "device.threads=1",
                *[f"model.{k}={v}" for k, v in SMALL_MODEL.items()],
                *[f"agent.{k}={v}" for k, v in SMALL_AGENT.items()]]


def test_diamond_run_resumes_exactly(tmp_path):
    full, _ = assert_resumes_exactly(tmp_path, [x.replace("[4, 8]", "[4,8]") for x in TINY_DIAMOND])
    rows = [line for line in (full / "metrics.jsonl").read_text().splitlines() if "model/denoising_loss" in line]
    assert rows and "agent/imag_return" in rows[-1]


def test_diamond_atari_preset_runs_a_few_cpu_steps(run_dir):
    """DIAMOND's Atari 100k preset (GPU-sized networks) composes and trains on Pong for a few CPU steps; only
    the batch sizes, the replay and the schedule are shrunk."""
    proc = train(run_dir, "experiment=diamond_atari", "total_steps=30", "agent.prefill=24", "model.update.start=24",
                 "model.update.updates=1", "model.batch_size=2", "model.reward_sequences=2", "model.reward_length=6",
                 "agent.starts=2", "agent.horizon=2", "replay.capacity=1000", "eval.every=30", "eval.episodes=1",
                 "eval.envs=1", "env.max_episode_steps=50", "checkpoint.every=30", "device.threads=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [r for r in metrics(run_dir) if "model/denoising_loss" in r]
    assert rows and np.isfinite(rows[-1]["agent/actor_loss"]) and (run_dir / "media").is_dir()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_actor_critic_learns_the_rewarded_action_in_imagination(monkeypatch, seed):
    """The learning rule alone: with imagination that pays 1 for action 0 and nothing for action 1 (the frames
    stay put), the policy's probability of action 0 climbs from about 1/2 to nearly 1 and the value grows."""
    m, agent = build()
    torch.manual_seed(seed)
    agent = FrameActorCritic(typed(FrameActorCritic, {**SMALL_AGENT, "starts": 16, "horizon": 5, "lr": 3e-3},
                                   "agent"), OBS, gym.spaces.Discrete(2), m)
    replay = numbered_replay()
    m.updates += 1

    def imagine_step(frames, actions, action, reward_state, generator=None):
        return frames[:, -1], action[:, 0], torch.zeros(len(action)), reward_state

    monkeypatch.setattr(m, "imagine_step", imagine_step)
    frames = m.start_states(replay, 16)["frames"][:, -1]

    def p_first() -> float:
        with torch.no_grad():
            return agent.policy(agent.observe(agent.initial(16), frames)[0]).probs[:, 0].mean().item()

    before = p_first()
    values = [agent.train_step(replay, i)["agent/value"] for i in range(120)]
    after = p_first()
    assert abs(before - 0.5) < 0.15 and after > 0.9
    assert values[0] < 1.0 and values[-1] > 3.0  # about 1 per imagined step, bootstrapped: the value keeps growing
