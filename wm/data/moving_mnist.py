"""Moving MNIST (Srivastava et al. 2015): digits bouncing inside a 64x64 canvas, 10 frames given, 10 predicted.

The generator follows the standard one (the script behind ``mnist_test_seq.npy``, also used by E3D-LSTM and
OpenSTL): each 28x28 digit starts at a uniform position, moves at a fixed speed (``step_length`` = 0.1 of the
free range per frame) in a uniform random direction, bounces off the borders, and digits are combined with a
pixelwise max.

Digit sources (``digits``):
- ``sklearn`` (offline default): the 1,797 8x8 handwritten digits that ship inside scikit-learn
  (``sklearn.datasets.load_digits``, the UCI optdigits test set), upsampled to 20x20 with a cubic spline,
  contrast-stretched and centred in a 28x28 box like MNIST. Images 0..1499 draw training sequences,
  1500..1796 the test set, so test digits are never seen in training.
- ``mnist_idx``: real MNIST idx files in ``mnist_dir`` (``train-images-idx3-ubyte`` and
  ``t10k-images-idx3-ubyte``, optionally ``.gz``); train sequences from the train images, the test set from
  the t10k images.

``test_file`` (optional) points at the standard ``mnist_test_seq.npy`` (uint8, shape (20, N, 64, 64)); when
given it replaces the generated test set (its first ``test_size`` sequences).

Training batches are generated on the fly from a generator seeded by (seed, step), so a batch depends only on
the run seed and the optimizer step: resuming needs no dataset state. The test set depends only on
``test_seed``, never on the run seed, so every run is scored on the same sequences.

Frames come out as uint8 tensors of shape (B, T, 1, 64, 64); models scale them to [0, 1].
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from wm.config import check_tree, param

try:  # one readable line through train.py when the core is present
    from wm.errors import ConfigError as _UserError
except ImportError:  # pragma: no cover - before the core lands
    _UserError = ValueError


class DataFileError(_UserError):
    """A missing, corrupt or wrong-shaped data file; the message names the file and what is wrong."""


SKLEARN_TRAIN = 1500  # sklearn digits [0, 1500) train, [1500, 1797) test


# ----------------------------------------------------------------------------------------------- digit sources
@functools.lru_cache(maxsize=4)
def sklearn_digits(split: str, digit_size: int = 28) -> np.ndarray:
    """The scikit-learn bundled 8x8 digits as MNIST-like uint8 images of shape (N, digit_size, digit_size).

    Cached and read-only: callers share one array.
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    images = images[:SKLEARN_TRAIN] if split == "train" else images[SKLEARN_TRAIN:]
    inner = round(digit_size * 20 / 28)  # MNIST: a 20x20 digit centred in 28x28
    up = zoom(images, (1, inner / 8, inner / 8), order=3)
    up = np.clip((up - 0.15) / 0.6, 0.0, 1.0)  # sharpen the blurry upsample towards MNIST's strokes
    out = np.zeros((len(images), digit_size, digit_size), np.float32)
    o = (digit_size - inner) // 2
    out[:, o : o + inner, o : o + inner] = up
    out = (out * 255).round().astype(np.uint8)
    out.flags.writeable = False
    return out


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def load_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST idx3-ubyte image file (optionally gzipped) as uint8 (N, rows, cols)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"MNIST idx file not found: {path}")
    try:
        with _open_maybe_gz(path) as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataFileError(f"cannot read MNIST idx file {path}: {e}") from None
    if len(data) < 16:
        raise DataFileError(f"corrupt MNIST idx file {path}: {len(data)} bytes, shorter than the 16-byte header")
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x00000803:
        raise DataFileError(
            f"not an MNIST image idx file: {path} (magic {magic:#010x}, expected 0x00000803 for uint8 images)"
        )
    if len(data) != 16 + n * rows * cols:
        raise DataFileError(
            f"corrupt MNIST idx file {path}: header says {n}x{rows}x{cols} = {n * rows * cols} bytes of pixels, "
            f"file has {len(data) - 16}"
        )
    if n == 0 or rows < 4 or cols < 4:
        raise DataFileError(f"MNIST idx file {path} holds no usable images ({n}x{rows}x{cols})")
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols).copy()


def mnist_idx_digits(mnist_dir: str | os.PathLike, split: str) -> np.ndarray:
    stem = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
    d = Path(mnist_dir)
    if not d.is_dir():
        raise DataFileError(f"data.mnist_dir is not a directory: {d}")
    for name in (stem, stem + ".gz", stem.replace("-idx3", ".idx3"), stem.replace("-idx3", ".idx3") + ".gz"):
        if (d / name).is_file():
            return load_idx_images(d / name)
    raise DataFileError(f"MNIST {split} images not found in {d}: expected {stem} or {stem}.gz")


def open_test_seq(path: str | os.PathLike, seq_len: int = 20, size: int = 64) -> np.ndarray:
    """Memory-map the standard ``mnist_test_seq.npy`` ((T, N, H, W), 820 MB for 10,000 sequences) after
    checking that it exists, parses and has the expected shape; the pixels are not read yet."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"Moving MNIST test file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy raises ValueError / OSError / EOFError / UnpicklingError on bad files
        raise DataFileError(f"corrupt Moving MNIST file {path}: {e.__class__.__name__}: {e}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 4 or arr.shape[0] != seq_len or arr.shape[2:] != (size, size):
        raise DataFileError(
            f"wrong shape in {path}: got {getattr(arr, 'shape', None)}, expected ({seq_len}, N, {size}, {size}) "
            "like mnist_test_seq.npy"
        )
    if arr.shape[1] == 0:
        raise DataFileError(f"{path} holds no sequences")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataFileError(f"wrong values in {path}: dtype {arr.dtype}, expected uint8 pixels 0..255")
    return arr


def load_test_seq(path: str | os.PathLike, seq_len: int = 20, size: int = 64, limit: int | None = None) -> np.ndarray:
    """Load (the first ``limit`` sequences of) ``mnist_test_seq.npy`` as uint8 (N, T, H, W)."""
    arr = np.asarray(open_test_seq(path, seq_len, size)[:, :limit])
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise DataFileError(f"wrong values in {path}: dtype {arr.dtype}, expected uint8 pixels 0..255")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr.transpose(1, 0, 2, 3))


# ----------------------------------------------------------------------------------------------- generator
def trajectories(rng: np.random.Generator, n: int, seq_len: int, free: int, step_length: float) -> np.ndarray:
    """Top-left corners (n, seq_len, 2) as ints in [0, free]: uniform start, uniform direction, bouncing."""
    pos = rng.random((n, 2))
    theta = rng.random(n) * 2 * np.pi
    vel = np.stack([np.sin(theta), np.cos(theta)], axis=1)  # (y, x)
    out = np.empty((n, seq_len, 2))
    for t in range(seq_len):
        pos = pos + vel * step_length
        low, high = pos <= 0, pos >= 1
        pos = np.clip(pos, 0, 1)
        vel = np.where(low | high, -vel, vel)
        out[:, t] = pos
    return (out * free).astype(np.int64)


def generate(
    digits: np.ndarray,
    n: int,
    rng: np.random.Generator,
    seq_len: int = 20,
    size: int = 64,
    num_digits: int = 2,
    step_length: float = 0.1,
) -> np.ndarray:
    """``n`` Moving MNIST sequences as uint8 (n, seq_len, size, size) drawn from ``digits`` (N, d, d)."""
    d = digits.shape[-1]
    free = size - d
    if free < 0:
        raise ValueError(f"digit size {d} exceeds canvas size {size}")
    out = np.zeros((n, seq_len, size, size), np.uint8)
    for _ in range(num_digits):
        idx = rng.integers(0, len(digits), n)
        corners = trajectories(rng, n, seq_len, free, step_length)
        for i in range(n):
            img = digits[idx[i]]
            for t in range(seq_len):
                y, x = corners[i, t]
                win = out[i, t, y : y + d, x : x + d]
                np.maximum(win, img, out=win)
    return out


# ----------------------------------------------------------------------------------------------- dataset
class MovingMNIST:
    """data=moving_mnist: the dataset a supervised model owns (built as ``build(cfg.data, seed=cfg.seed)``)."""

    @dataclass
    class Config:
        digits: str = param("sklearn", choices=("sklearn", "mnist_idx"))
        # folder with the MNIST idx files, for digits=mnist_idx
        mnist_dir: Optional[str] = param(None, free="a folder, checked below by reading it")
        # mnist_test_seq.npy: replaces the generated test set
        test_file: Optional[str] = param(None, free="a file, checked below by reading it")
        size: int = param(64, gt=0)
        num_digits: int = param(2, gt=0)
        context: int = param(10, gt=0)  # frames given
        horizon: int = param(10, gt=0)  # frames predicted
        test_size: int = param(1000, gt=0)  # test sequences (the standard file has 10,000)
        test_seed: int = param(2015, ge=0)  # the test set depends on this only, never on the run seed
        step_length: float = param(0.1, gt=0, le=1)

        def check(self) -> None:
            box = 28  # both digit sources are drawn in a 28x28 box
            if self.size < box:
                raise ValueError(f"size: must be >= {box}, the digits' box (got {self.size})")
            if self.digits == "mnist_idx" and not self.mnist_dir:
                raise ValueError("mnist_dir: digits=mnist_idx needs data.mnist_dir=<folder with the idx files>")
            # files are checked here, so a bad path or file stops the run before it starts (one line)
            if self.test_file:
                try:
                    open_test_seq(self.test_file, self.context + self.horizon, self.size)
                except DataFileError as e:
                    raise ValueError(f"test_file: {e}") from None
            if self.digits == "mnist_idx":
                try:
                    for split in ("train", "test"):
                        mnist_idx_digits(self.mnist_dir, split)
                except DataFileError as e:
                    raise ValueError(f"mnist_dir: {e}") from None

    channels = 1
    action_dim = 0

    def __init__(self, cfg: MovingMNIST.Config, seed: int = 0):
        check_tree(cfg, "data")  # also when built directly, not through typed()
        self.cfg = cfg
        self.seed = int(seed)
        self.context, self.horizon, self.size = cfg.context, cfg.horizon, cfg.size
        self.seq_len = cfg.context + cfg.horizon
        if cfg.digits == "sklearn":
            self.train_digits, test_digits = sklearn_digits("train"), sklearn_digits("test")
            self.source = "scikit-learn bundled 8x8 digits, upsampled to 20x20 in a 28x28 box"
        else:
            self.train_digits = mnist_idx_digits(cfg.mnist_dir, "train")
            test_digits = mnist_idx_digits(cfg.mnist_dir, "test")
            self.source = f"MNIST idx files in {cfg.mnist_dir}"
        if cfg.test_file:
            test = load_test_seq(cfg.test_file, self.seq_len, cfg.size, cfg.test_size)
            self.test_source = f"{cfg.test_file} (first {len(test)} sequences)"
        else:
            rng = np.random.default_rng(cfg.test_seed)
            test = generate(test_digits, cfg.test_size, rng, self.seq_len, cfg.size, cfg.num_digits, cfg.step_length)
            self.test_source = f"generated from {self.source} (test split), test_seed={cfg.test_seed}"
        self.test = torch.from_numpy(test).unsqueeze(2)  # (N, T, 1, H, W) uint8

    def train_batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        """A training batch that depends only on (run seed, step): dict(frames=(B, T, 1, H, W) uint8)."""
        rng = np.random.default_rng([self.seed, int(step)])
        c = self.cfg
        x = generate(self.train_digits, batch_size, rng, self.seq_len, c.size, c.num_digits, c.step_length)
        return {"frames": torch.from_numpy(x).unsqueeze(2)}

    def test_batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(self.test), batch_size):
            yield {"frames": self.test[i : i + batch_size]}

    def __len__(self) -> int:
        return len(self.test)
