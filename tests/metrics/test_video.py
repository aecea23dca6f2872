import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from wm.metrics.video import VideoMetrics, blank, copy_last, frame_mae, frame_mse, frame_ssim, strip_image


def hand_case():
    """Two sequences, two frames of 1x4x4; the prediction is all zeros."""
    true = torch.zeros(2, 2, 1, 4, 4)
    true[0, 0, 0, 0, 0] = 1.0  # seq 0 frame 0: one pixel of 1   -> sq 1,   abs 1
    true[0, 1, 0, 1, :2] = 0.5  # seq 0 frame 1: two pixels of .5 -> sq .5,  abs 1
    true[1, 0, 0, 2, :] = 0.25  # seq 1 frame 0: four of .25      -> sq .25, abs 1
    # seq 1 frame 1: all zero -> 0, 0
    return torch.zeros_like(true), true


def test_mse_mae_match_hand_computation():
    pred, true = hand_case()
    assert frame_mse(pred, true).tolist() == [[1.0, 0.5], [0.25, 0.0]]
    assert frame_mae(pred, true).tolist() == [[1.0, 1.0], [1.0, 0.0]]
    m = VideoMetrics(ssim=False)
    m.update(pred, true)
    pf = m.per_frame()
    assert pf["mse"] == pytest.approx([0.625, 0.25]) and pf["mae"] == pytest.approx([1.0, 0.5])
    assert m.compute() == pytest.approx({"mse": 0.4375, "mae": 0.75})


def test_mse_equals_openstl_formula():
    rng = np.random.default_rng(0)
    p, t = rng.random((3, 5, 1, 8, 8)), rng.random((3, 5, 1, 8, 8))
    m = VideoMetrics(ssim=False)
    m.update(torch.from_numpy(p), torch.from_numpy(t))
    assert m.compute()["mse"] == pytest.approx(np.mean((p - t) ** 2, axis=(0, 1)).sum())
    assert m.compute()["mae"] == pytest.approx(np.mean(np.abs(p - t), axis=(0, 1)).sum())


def test_accumulating_batches_equals_one_pass():
    g = torch.Generator().manual_seed(0)
    p, t = torch.rand(6, 3, 1, 16, 16, generator=g), torch.rand(6, 3, 1, 16, 16, generator=g)
    one, two = VideoMetrics(), VideoMetrics()
    one.update(p, t)
    two.update(p[:4], t[:4])
    two.update(p[4:], t[4:])
    assert one.per_frame()["mse"] == pytest.approx(two.per_frame()["mse"])
    assert one.compute()["ssim"] == pytest.approx(two.compute()["ssim"])


def test_ssim_identity_and_library_agreement():
    g = torch.Generator().manual_seed(1)
    t = torch.rand(2, 2, 1, 32, 32, generator=g)
    assert frame_ssim(t, t) == pytest.approx(np.ones((2, 2)))
    p = (t + 0.2 * torch.rand(t.shape, generator=g)).clamp(0, 1)
    s = frame_ssim(p, t)
    ref = structural_similarity(p[1, 0, 0].numpy(), t[1, 0, 0].numpy(), data_range=1.0)
    assert s[1, 0] == pytest.approx(ref) and (s < 1).all()
    assert (frame_ssim(p, t, 2.0) > s).all()  # the legacy data_range=2 reads higher
    # predictions outside [0, 1] are clipped before SSIM, as OpenSTL does
    assert frame_ssim(t + 5.0, t)[0, 0] == pytest.approx(frame_ssim(torch.ones_like(t), t)[0, 0])
    rgb = torch.rand(1, 1, 3, 16, 16, generator=g)
    assert frame_ssim(rgb, rgb) == pytest.approx(np.ones((1, 1)))


def test_baselines():
    ctx = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 1, 2, 2)
    c = copy_last(ctx, 5)
    assert c.shape == (2, 5, 1, 2, 2) and torch.equal(c[:, 4], ctx[:, 2])
    b = blank(torch.full((1, 2, 2), 0.5), 2, 5)
    assert b.shape == (2, 5, 1, 2, 2) and (b == 0.5).all()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        VideoMetrics().update(torch.zeros(1, 2, 1, 4, 4), torch.zeros(1, 3, 1, 4, 4))


def test_strip_image_layout():
    gt = np.zeros((2, 4, 1, 8, 8), np.uint8)
    img = strip_image(gt, gt, context=2)
    assert img.ndim == 3 and img.shape[1] == 4 * 8 and img.shape[2] == 3
    assert img.shape[0] == 2 * (2 * 8 + 2 * 2) + 2 * 2  # 2 seqs x (gt, pred) rows + gaps
