import numpy as np
import pytest

from wm.metrics.graphs import draw_graphs, edge_f1, shd


def chain() -> np.ndarray:
    """3 inputs -> 3 outputs: x0 -> y1, x1 -> y2, x2 -> y2 (3 edges)."""
    g = np.zeros((3, 3), bool)
    g[0, 1] = g[1, 2] = g[2, 2] = True
    return g


def test_one_missing_one_extra_edge():
    learned = chain()
    learned[2, 2] = False  # missing: fn 1
    learned[0, 0] = True  # extra: fp 1
    # tp = 2 (x0->y1, x1->y2); precision 2/3, recall 2/3, f1 = 2 * (4/9) / (4/3) = 2/3
    assert shd(chain(), learned) == 2
    score = edge_f1(chain(), learned)
    assert (score["tp"], score["fp"], score["fn"]) == (2, 1, 1)
    assert score["precision"] == pytest.approx(2 / 3)
    assert score["recall"] == pytest.approx(2 / 3)
    assert score["f1"] == pytest.approx(2 / 3)


def test_unequal_precision_and_recall():
    learned = np.zeros((3, 3), bool)
    learned[0, 1] = True  # one of three true edges found, nothing extra
    score = edge_f1(chain(), learned)
    # precision 1, recall 1/3, f1 = 2 * (1/3) / (4/3) = 1/2
    assert shd(chain(), learned) == 2
    assert (score["precision"], score["recall"]) == (1.0, pytest.approx(1 / 3))
    assert score["f1"] == pytest.approx(0.5)


def test_identical_graphs():
    assert shd(chain(), chain()) == 0
    assert edge_f1(chain(), chain()) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 3, "fp": 0, "fn": 0}
    empty = np.zeros((2, 4), bool)
    assert shd(empty, empty) == 0 and edge_f1(empty, empty)["f1"] == 1.0


def test_empty_denominators():
    nothing = np.zeros((3, 3), bool)
    # Nothing learned: no wrong claims (precision 1) but every true edge missed.
    assert edge_f1(chain(), nothing) == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 3}
    # Empty truth: nothing to miss (recall 1) but every learned edge is extra.
    assert edge_f1(nothing, chain()) == {"precision": 0.0, "recall": 1.0, "f1": 0.0, "tp": 0, "fp": 3, "fn": 0}


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        shd(chain(), np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="same shape"):
        edge_f1(chain(), np.zeros((4, 3), bool))


def test_draw_graphs_writes_png(tmp_path):
    learned = chain()
    learned[2, 2], learned[0, 0] = False, True
    path = draw_graphs(tmp_path / "sub" / "graphs.png", chain(), {"pc": learned, "exact": chain()},
                       ["x0", "x1", "action"], ["y0", "y1", "y2"], title="chain")
    assert path == tmp_path / "sub" / "graphs.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
