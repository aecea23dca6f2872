"""Dict observations (image + vector + presence flags) through the replay, the RSSM's per-key encoders and
decoders, and a whole online run that resumes exactly."""

import gymnasium as gym
import numpy as np
import torch

from tests.conftest import assert_resumes_exactly
from wm.data.replay import Replay
from wm.models.rssm import RSSM

SPACE = gym.spaces.Dict({
    "image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
    "vector": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
    "present_image": gym.spaces.Box(0.0, 1.0, (1,), np.float32),
    "present_vector": gym.spaces.Box(0.0, 1.0, (1,), np.float32),
})
ACTIONS = gym.spaces.Discrete(2)


def observations(n: int, rng: np.random.Generator, present: float = 1.0) -> dict[str, np.ndarray]:
    return {"image": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
            "vector": rng.normal(size=(n, 4)).astype(np.float32),
            "present_image": np.full((n, 1), present, np.float32), "present_vector": np.ones((n, 1), np.float32)}


def filled_replay(rows: int = 40) -> Replay:
    rng = np.random.default_rng(0)
    replay = Replay(200, 2, SPACE, ACTIONS, seed=1)
    for t in range(rows):
        replay.add(np.arange(2), obs=observations(2, rng, present=float(t % 5 != 0)), action=rng.integers(0, 2, 2),
                   reward=np.ones(2, np.float32), is_first=np.full(2, t == 0), is_last=np.zeros(2, bool),
                   is_terminal=np.zeros(2, bool))
    return replay


def test_replay_stores_each_key_and_round_trips():
    replay = filled_replay()
    batch = replay.sample_sequences(3, 8)
    assert set(batch["obs"]) == set(SPACE.spaces)
    assert batch["obs"]["image"].shape == (3, 8, 16, 16, 3) and batch["obs"]["image"].dtype == torch.uint8
    assert batch["obs"]["vector"].shape == (3, 8, 4) and batch["action"].shape == (3, 8)
    moves = replay.sample_transitions(4)
    assert moves["next_obs"]["present_image"].shape == (4, 1)
    again = Replay(200, 2, SPACE, ACTIONS, seed=5)
    again.load_state_dict(replay.state_dict())
    a, b = replay.sample_sequences(3, 8), again.sample_sequences(3, 8)
    assert all(torch.equal(a["obs"][k], b["obs"][k]) for k in SPACE.spaces)


def small_rssm(**kw) -> RSSM:
    torch.manual_seed(0)
    cfg = RSSM.Config(deter=32, hidden=32, units=32, cnn_depth=4, batch=3, length=8, **kw)
    return RSSM(cfg, SPACE, ACTIONS)


def test_encoder_per_key_and_presence_flags():
    """A CNN for the image and an MLP for the vector; a missing image's pixels do not reach the embedding, the
    flag does; a present image's do."""
    model = small_rssm()
    assert type(model.encoder.nets["image"]).__name__ == "ConvEncoder"
    assert type(model.encoder.nets["vector"]).__name__ == "Sequential"
    rng = np.random.default_rng(1)
    obs = observations(2, rng, present=0.0)
    other = dict(obs, image=rng.integers(0, 256, obs["image"].shape, dtype=np.uint8))
    with torch.no_grad():
        assert torch.equal(model.embed(obs), model.embed(other))
        seen = {k: v.copy() for k, v in obs.items()}
        seen["present_image"][:] = 1.0
        assert not torch.equal(model.embed(seen), model.embed(dict(seen, image=other["image"])))
        assert not torch.equal(model.embed(seen), model.embed(obs))  # the flag itself is an input


def test_decoder_keys_losses_and_missing_rows():
    """Each decoded key has its loss; a missing key carries none; encode/decode keys choose the paths."""
    replay = filled_replay()
    model = small_rssm()
    batch = replay.sample_sequences(3, 8)
    loss, metrics, post = model.loss(batch)
    assert {"model/obs_loss_image", "model/obs_loss_vector"} <= set(metrics) and torch.isfinite(loss)
    obs = model.preprocess(batch["obs"])
    _, per_key = model.decoder.loss(model.feat(post), obs)
    missing = batch["obs"]["present_image"][..., 0] == 0
    assert missing.any() and (per_key["image"][missing] == 0).all() and (per_key["image"][~missing] > 0).all()
    vector_only = small_rssm(encode_keys=["vector"], decode_keys=["image"])
    assert list(vector_only.encoder.nets) == ["vector"] and list(vector_only.decoder.nets) == ["image"]
    _, metrics, _ = vector_only.loss(batch)
    assert "model/obs_loss_image" in metrics and "model/obs_loss_vector" not in metrics
    loss.backward()
    assert model.encoder.nets["image"].net[0].weight.grad.abs().sum() > 0


def test_multimodal_online_run_resumes_exactly(tmp_path):
    """CartPole as image + vector with modalities missing 20% of steps, through train.py: the replay of Dict
    rows, the flags' RNG and the model all come back from a checkpoint exactly."""
    run = ["env=cartpole", "env.pixels=true", "env.proprio=state", "env.size=16", "env.num_envs=2",
           "env.miss_ratio=0.2", "model.deter=32", "model.hidden=32", "model.units=32", "model.cnn_depth=4",
           "model.batch=4", "model.length=8", "model.update.start=100", "agent.prefill=100", "agent.units=32",
           "agent.starts=16", "total_steps=300", "eval.every=150", "eval.episodes=2", "eval.envs=2",
           "checkpoint.every=150", "device=cpu", "device.threads=1"]
    full, _ = assert_resumes_exactly(tmp_path, run)
    assert list((full / "videos").glob("open_loop_*.mp4")) or list((full / "videos").glob("open_loop_*.gif"))
