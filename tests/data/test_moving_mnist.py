import gzip
import struct

import numpy as np
import pytest
import torch

from wm.data.moving_mnist import (
    DataFileError,
    MovingMNIST,
    generate,
    load_idx_images,
    load_test_seq,
    sklearn_digits,
    trajectories,
)


@pytest.fixture(scope="module")
def digits():
    return sklearn_digits("test")


def write_idx(path, images, magic=0x00000803, gz=False):
    n, r, c = images.shape
    data = struct.pack(">IIII", magic, n, r, c) + images.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_sklearn_digits_look_like_mnist():
    train, test = sklearn_digits("train"), sklearn_digits("test")
    assert train.shape == (1500, 28, 28) and test.shape == (297, 28, 28)
    assert train.dtype == np.uint8 and train.max() == 255
    # centred 20x20 digit in a 28x28 box: a 4-pixel empty border like MNIST
    assert train[:, :4].max() == 0 and train[:, -4:].max() == 0 and train[:, :, :4].max() == 0


def test_generator_is_deterministic(digits):
    a = generate(digits, 5, np.random.default_rng(3))
    b = generate(digits, 5, np.random.default_rng(3))
    c = generate(digits, 5, np.random.default_rng(4))
    assert a.shape == (5, 20, 64, 64) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_trajectories_stay_inside_and_move_at_constant_speed():
    rng = np.random.default_rng(0)
    pos = trajectories(rng, 200, 40, 36, 0.1)
    assert pos.min() >= 0 and pos.max() <= 36
    step = np.abs(np.diff(pos, axis=1))
    assert step.max() <= 4  # 0.1 * 36 = 3.6 px per frame (+1 for rounding)
    assert (step.sum(-1) > 0).mean() > 0.95  # the digits move


def test_single_digit_is_never_clipped(digits):
    x = generate(digits, 20, np.random.default_rng(1), num_digits=1).astype(np.int64)
    sums = x.sum((2, 3))
    assert (sums == sums[:, :1]).all()  # the whole digit is on the canvas in every frame
    assert x.max() <= digits.max()


def test_dataset_batches_depend_on_seed_and_step_test_set_only_on_test_seed():
    cfg = MovingMNIST.Config(test_size=8)
    d0, d0b, d1 = MovingMNIST(cfg, seed=0), MovingMNIST(cfg, seed=0), MovingMNIST(cfg, seed=1)
    b = d0.train_batch(5, 4)["frames"]
    assert b.shape == (4, 20, 1, 64, 64) and b.dtype == torch.uint8
    assert torch.equal(b, d0b.train_batch(5, 4)["frames"])
    assert not torch.equal(b, d0.train_batch(6, 4)["frames"])
    assert not torch.equal(b, d1.train_batch(5, 4)["frames"])
    assert torch.equal(d0.test, d1.test) and d0.test.shape == (8, 20, 1, 64, 64)
    other = MovingMNIST(MovingMNIST.Config(test_size=8, test_seed=7), seed=0)
    assert not torch.equal(d0.test, other.test)
    assert sum(len(x["frames"]) for x in d0.test_batches(3)) == 8


def test_config_rejects_bad_values():
    from wm.config import check_tree

    with pytest.raises(ValueError, match="data.digits: must be one of sklearn, mnist_idx"):
        check_tree(MovingMNIST.Config(digits="emnist"), "data")
    with pytest.raises(ValueError, match="data.mnist_dir"):
        check_tree(MovingMNIST.Config(digits="mnist_idx"), "data")
    with pytest.raises(ValueError, match="data.horizon: must be > 0"):
        check_tree(MovingMNIST.Config(horizon=0), "data")


def test_load_test_seq_reads_the_standard_layout(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", arr)
    out = load_test_seq(tmp_path / "mnist_test_seq.npy")
    assert out.shape == (3, 20, 64, 64) and np.array_equal(out[1, 4], arr[4, 1])
    assert load_test_seq(tmp_path / "mnist_test_seq.npy", limit=2).shape == (2, 20, 64, 64)
    d = MovingMNIST(MovingMNIST.Config(test_file=str(tmp_path / "mnist_test_seq.npy"), test_size=2), seed=0)
    assert d.test.shape == (2, 20, 1, 64, 64) and torch.equal(d.test[1, 4, 0], torch.from_numpy(arr[4, 1]))


def test_load_test_seq_rejects_bad_files(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        load_test_seq(tmp_path / "missing.npy")
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage" + bytes(100))
    with pytest.raises(DataFileError, match="corrupt"):
        load_test_seq(tmp_path / "corrupt.npy")
    np.save(tmp_path / "short.npy", np.zeros((10, 3, 64, 64), np.uint8))
    with pytest.raises(DataFileError, match="wrong shape"):
        load_test_seq(tmp_path / "short.npy")
    np.save(tmp_path / "small.npy", np.zeros((20, 3, 32, 32), np.uint8))
    with pytest.raises(DataFileError, match="wrong shape"):
        load_test_seq(tmp_path / "small.npy")
    np.save(tmp_path / "float.npy", np.full((20, 1, 64, 64), 300.0))
    with pytest.raises(DataFileError, match="wrong values"):
        load_test_seq(tmp_path / "float.npy")
    # through the config check: a ValueError naming the key, which train.py turns into one line
    with pytest.raises(ValueError, match="test_file: Moving MNIST test file not found"):
        MovingMNIST(MovingMNIST.Config(test_file=str(tmp_path / "nope.npy")), seed=0)
    with pytest.raises(ValueError, match="test_file: wrong shape"):
        MovingMNIST.Config(test_file=str(tmp_path / "short.npy")).check()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_and_mnist_source(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", imgs, gz=gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", imgs[:3], gz=gz)
    assert np.array_equal(load_idx_images(tmp_path / f"train-images-idx3-ubyte{suffix}"), imgs)
    d = MovingMNIST(MovingMNIST.Config(digits="mnist_idx", mnist_dir=str(tmp_path), test_size=2), seed=0)
    assert d.train_digits.shape == (6, 28, 28) and d.test.shape == (2, 20, 1, 64, 64)
    assert d.train_batch(0, 2)["frames"].max() > 0


def test_idx_loader_rejects_bad_files(tmp_path):
    imgs = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(DataFileError, match="not found"):
        load_idx_images(tmp_path / "nothing")
    write_idx(tmp_path / "labels", imgs, magic=0x00000801)
    with pytest.raises(DataFileError, match="magic"):
        load_idx_images(tmp_path / "labels")
    write_idx(tmp_path / "trunc", imgs)
    data = (tmp_path / "trunc").read_bytes()
    (tmp_path / "trunc").write_bytes(data[:-10])
    with pytest.raises(DataFileError, match="corrupt"):
        load_idx_images(tmp_path / "trunc")
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(DataFileError, match="corrupt"):
        load_idx_images(tmp_path / "tiny")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all, definitely")
    with pytest.raises(DataFileError, match="cannot read"):
        load_idx_images(tmp_path / "bad.gz")
    with pytest.raises(ValueError, match="mnist_dir: MNIST train images not found in"):
        MovingMNIST(MovingMNIST.Config(digits="mnist_idx", mnist_dir=str(tmp_path)), seed=0)
    with pytest.raises(ValueError, match="mnist_dir: data.mnist_dir is not a directory"):
        MovingMNIST(MovingMNIST.Config(digits="mnist_idx", mnist_dir=str(tmp_path / "nodir")), seed=0)
