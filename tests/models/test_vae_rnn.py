"""ConvVAE and MDN-RNN of World Models: the paper's shapes, the KL floor, learning, temperature, dreaming."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from wm.data.rollouts import FrameDataset, save_episode
from wm.models.vae_rnn import MDNRNN, VAERNN, ConvVAE, VAERNNConfig, free_bits, kl_per_sample

OBS = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
ACT = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))


def test_vae_shapes_and_kl_tolerance():
    torch.manual_seed(0)
    vae = ConvVAE(32)
    x = torch.rand(5, 3, 64, 64)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (5, 32)
    assert vae.decode(mu).shape == (5, 3, 64, 64)
    assert sum(p.numel() for p in vae.parameters()) > 4_000_000  # the paper's ~4.3M-parameter V
    loss, logs = vae.loss(x, kl_tolerance=0.5)
    # free bits: a KL below 0.5 * 32 nats costs exactly the floor
    assert logs["vae/kl"] < 16 and abs(loss.item() - (logs["vae/recon"] + 16)) < 1e-3


def test_kl_floor_is_per_sample_as_the_paper():
    # one sample at the prior (KL 0) and one far from it (KL 0.5 * 2^2 * 32 = 64); floor 0.5 * 32 = 16
    mu = torch.stack([torch.zeros(32), torch.full((32,), 2.0)]).requires_grad_()
    logvar = torch.zeros(2, 32)
    kl = kl_per_sample(mu, logvar)
    assert torch.allclose(kl, torch.tensor([0.0, 64.0]))
    loss = free_bits(kl, 16.0)
    assert abs(loss.item() - (16 + 64) / 2) < 1e-4  # a floor on the batch mean would give max(32, 16) = 32
    loss.backward()
    assert torch.all(mu.grad[0] == 0) and torch.all(mu.grad[1] != 0)  # below the floor: no KL gradient


def test_encode_samples_z_from_given_noise():
    cfg = VAERNNConfig(latent=8)
    cfg.rnn.hidden = 16
    model = VAERNN(cfg, OBS, ACT, torch.device("cpu"))
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), np.uint8)
    mu, logvar = model.vae.encode(model.to_input(frames))
    noise = torch.randn(3, 8)
    assert torch.equal(model.encode(frames), mu)
    assert torch.allclose(model.encode(frames, noise), mu + noise * (0.5 * logvar).exp())


def test_mdn_learns_a_deterministic_sequence_and_temperature_widens_samples():
    torch.manual_seed(0)
    rnn = MDNRNN(latent=4, actions=2, hidden=32, mixtures=3, reward_head=True, done_head=True)
    opt = torch.optim.Adam(rnn.parameters(), lr=1e-2)
    T = 12
    t = torch.arange(T + 1, dtype=torch.float32)
    z = torch.stack([torch.sin(t * 0.5 + k) for k in range(4)], -1)[None].repeat(8, 1, 1)  # (8, T+1, 4)
    a = torch.zeros(8, T, 2)
    reward, done, mask = z[:, 1:, 0].clone(), torch.zeros(8, T), torch.ones(8, T)
    first = rnn.loss(z, a, reward, done, mask)[1]["rnn/z_nll"]
    for _ in range(150):
        loss, logs = rnn.loss(z, a, reward, done, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["rnn/z_nll"] < first - 1.0  # nats per latent dimension
    assert logs["rnn/reward_mse"] < 0.05
    out, _ = rnn(z[:1, :-1], a[:1])
    cold = rnn.mixture(out, tau=0.1).sample((200,)).std(0).mean()
    hot = rnn.mixture(out, tau=1.5).sample((200,)).std(0).mean()
    assert cold < hot


def test_dream_step_and_check_spaces():
    cfg = VAERNNConfig(latent=8)
    cfg.rnn.hidden = 16
    model = VAERNN(cfg, OBS, ACT, torch.device("cpu"))
    state = model.rnn.initial_state(6, "cpu")
    gen = torch.Generator().manual_seed(0)
    z, r, d, state, h = model.dream_step(torch.zeros(6, 8), torch.zeros(6, 3), state, 1.0, gen)
    assert z.shape == (6, 8) and r.shape == (6,) and d.dtype == torch.bool and h.shape == (6, 16)
    assert VAERNN.check_spaces(OBS, ACT) is None
    assert "64x64 RGB" in VAERNN.check_spaces(gym.spaces.Box(-1, 1, (4,)), ACT)


def test_stage_steps_train_on_the_dataset_they_are_given(tmp_path):
    """The model holds no dataset: V and M steps read the FrameDataset passed in, deterministically per step."""
    rng = np.random.default_rng(0)
    for k, n in enumerate((6, 9)):
        save_episode(tmp_path, k, rng.integers(0, 255, (n + 1, 64, 64, 3)), rng.uniform(0, 1, (n, 3)),
                     rng.normal(size=n), np.eye(n)[-1])
    data = FrameDataset(tmp_path)
    cfg = VAERNNConfig(latent=8)
    cfg.vae.batch, cfg.rnn.hidden, cfg.rnn.batch, cfg.rnn.seq_len = 4, 16, 3, 5

    def trained():
        torch.manual_seed(0)
        model = VAERNN(cfg, OBS, ACT, torch.device("cpu"))
        logs = [model.train_vae_step(data, 0, i) for i in range(2)]
        model.encode_dataset(data)
        logs += [model.train_rnn_step(data, 0, i) for i in range(2)]
        return model, logs

    model, logs = trained()
    assert not hasattr(model, "data") and [len(lat["mu"]) for lat in model.latents] == [7, 10]
    assert logs == trained()[1]  # the same batches: drawn from (seed, stream, step) only
    assert model.reconstructions(data, n=4).shape == (128, 256, 3)
