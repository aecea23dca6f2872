"""Video prediction metrics per predicted frame, computed as OpenSTL reports them.

Frames are float in [0, 1], shaped (B, T, C, H, W), T = predicted frames.
- MSE: squared error summed over the pixels (C, H, W) of a frame, averaged over sequences (and over frames
  for the scalar): OpenSTL's ``np.mean((pred - true) ** 2, axis=(0, 1)).sum()``.
- MAE: the same with the absolute error.
- SSIM: scikit-image's ``structural_similarity`` on each (H, W[, C]) frame with ``data_range=1`` (the true
  range of [0, 1] frames), averaged over sequences. OpenSTL calls the same function without ``data_range``;
  scikit-image releases before 0.19 then took the float dtype's range, 2, which gives higher values, so
  ``ssim_range2`` (``data_range=2``) is kept too for a like-for-like comparison with its published tables.
  Predictions are clipped to [0, 1] first, as OpenSTL does for SSIM.

``VideoMetrics`` accumulates over batches; ``baselines`` builds the copy-last-frame and blank predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity


def frame_mse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per sequence and frame: squared error summed over (C, H, W) -> (B, T)."""
    return ((pred.float() - true.float()) ** 2).flatten(2).sum(-1)


def frame_mae(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per sequence and frame: absolute error summed over (C, H, W) -> (B, T)."""
    return (pred.float() - true.float()).abs().flatten(2).sum(-1)


def frame_ssim(pred: torch.Tensor, true: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """Per sequence and frame SSIM (scikit-image, Gaussian-free 7x7 window, as OpenSTL) -> (B, T)."""
    p = pred.detach().float().clamp(0, 1).cpu().numpy()
    t = true.detach().float().cpu().numpy()
    B, T, C = p.shape[:3]
    out = np.empty((B, T))
    for b in range(B):
        for f in range(T):
            if C == 1:
                out[b, f] = structural_similarity(p[b, f, 0], t[b, f, 0], data_range=data_range)
            else:
                out[b, f] = structural_similarity(
                    p[b, f].transpose(1, 2, 0), t[b, f].transpose(1, 2, 0), data_range=data_range, channel_axis=2
                )
    return out


class VideoMetrics:
    """Accumulates per-frame MSE / MAE (and optionally SSIM) sums over batches of (B, T, C, H, W)."""

    def __init__(self, ssim: bool = True, ssim_range2: bool = True):
        self.ssim, self.ssim_range2 = ssim, ssim_range2
        self.n = 0
        self.sums: dict[str, np.ndarray] = {}

    def _add(self, key: str, per_seq_frame: np.ndarray) -> None:
        s = per_seq_frame.sum(0)
        self.sums[key] = self.sums[key] + s if key in self.sums else s

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if pred.shape != true.shape or pred.dim() != 5:
            raise ValueError(f"pred and true must both be (B, T, C, H, W); got {tuple(pred.shape)}, {tuple(true.shape)}")
        self._add("mse", frame_mse(pred, true).double().cpu().numpy())
        self._add("mae", frame_mae(pred, true).double().cpu().numpy())
        if self.ssim:
            self._add("ssim", frame_ssim(pred, true, 1.0))
            if self.ssim_range2:
                self._add("ssim_range2", frame_ssim(pred, true, 2.0))
        self.n += pred.shape[0]

    def per_frame(self) -> dict[str, list[float]]:
        return {k: (v / self.n).tolist() for k, v in self.sums.items()}

    def compute(self) -> dict[str, float]:
        """Means over frames and sequences."""
        return {k: float(np.mean(v / self.n)) for k, v in self.sums.items()}


def copy_last(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """Repeat the last given frame: (B, Tc, C, H, W) -> (B, horizon, C, H, W)."""
    return context[:, -1:].expand(-1, horizon, *context.shape[2:])


def blank(background: torch.Tensor, batch: int, horizon: int) -> torch.Tensor:
    """The background frame (C, H, W) for every predicted frame -> (batch, horizon, C, H, W)."""
    return background.float()[None, None].expand(batch, horizon, *background.shape)


# --------------------------------------------------------------------------------------------- pictures
def _tile(frames: np.ndarray) -> np.ndarray:
    """(T, C, H, W) uint8 -> (H, T*W, 3) uint8 (grey frames become RGB)."""
    T, C, H, W = frames.shape
    x = frames if C == 3 else np.repeat(frames[:, :1], 3, axis=1)
    return x.transpose(2, 0, 3, 1).reshape(H, T * W, 3)


def strip_image(gt: np.ndarray, pred: np.ndarray, context: int, gap: int = 2) -> np.ndarray:
    """Rows of ground truth over prediction for each sequence; a red bar marks where prediction starts.

    gt, pred: uint8 (N, T, C, H, W), pred holding the given frames in its first ``context`` frames.
    """
    N, T, _, _, W = gt.shape
    rows = []
    for i in range(N):
        pair = [_tile(gt[i]), _tile(pred[i])]
        for r in pair:
            r[:, context * W - 1 : context * W + 1] = (255, 0, 0)
            rows.append(r)
            rows.append(np.full((gap, T * W, 3), 128, np.uint8))
        rows.append(np.full((gap * 2, T * W, 3), 255, np.uint8))
    return np.concatenate(rows[:-1], 0)


def save_strip(gt: np.ndarray, pred: np.ndarray, context: int, path) -> Path:
    from pathlib import Path

    import imageio.v2 as imageio

    path = Path(path)
    imageio.imwrite(path, strip_image(gt, pred, context))
    return path


def save_video(gt: np.ndarray, pred: np.ndarray, context: int, stem, scale: int = 2, fps: int = 4) -> Path:
    """Side-by-side ground truth | prediction over time for each sequence, stacked vertically.

    Writes ``stem``.mp4 (imageio-ffmpeg) or, if that fails, ``stem``.gif.
    """
    from pathlib import Path

    import imageio.v2 as imageio

    N, T, _, H, _ = gt.shape
    frames = []
    for t in range(T):
        rows = []
        for i in range(N):
            g, p = _tile(gt[i, t : t + 1]), _tile(pred[i, t : t + 1])
            sep = np.zeros((H, 4, 3), np.uint8)
            sep[:] = (255, 0, 0) if t >= context else (255, 255, 255)
            rows.append(np.concatenate([g, sep, p], 1))
        frame = np.concatenate(rows, 0).repeat(scale, 0).repeat(scale, 1)
        h, w = frame.shape[:2]
        frames.append(np.pad(frame, ((0, -h % 16), (0, -w % 16), (0, 0))))
    stem = Path(stem)
    try:
        path = stem.with_suffix(".mp4")
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=16)
    except Exception:  # any ffmpeg/backend failure: fall back to a GIF
        path = stem.with_suffix(".gif")
        imageio.mimwrite(path, frames, duration=1000 / fps, loop=0)
    return path


def record_media(out_dir, logger, step: int, written: dict, per_frame: dict | None) -> dict:
    """The end of a video model's ``artifacts``: the last evaluation's per-frame metrics as eval_per_frame.json
    (into ``written``), and the strip and video in ``written`` logged (W&B too) as media at ``step``."""
    import json

    if per_frame:
        path = Path(out_dir) / "eval_per_frame.json"
        path.write_text(json.dumps(per_frame, indent=1))
        written["per_frame"] = path
    if logger is not None and hasattr(logger, "log_file"):
        logger.log_file("media/prediction_strip", written["strip"], "image", step)
        logger.log_file("media/prediction_video", written["video"], "video", step)
    return written
