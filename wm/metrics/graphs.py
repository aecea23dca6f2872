"""Scores and pictures for lagged dependency graphs, to compare a learned causal structure with the truth.

A graph is a boolean matrix ``adj`` of shape (I, J): ``adj[i, j]`` means input i at time t (the action is
one of the inputs) influences output j at time t+1. Time fixes every edge's direction, so two graphs are
compared entry by entry: ``shd`` counts the differing entries, ``edge_f1`` scores the learned edges as a
detector of the true ones, and ``draw_graphs`` shows the truth next to learned graphs with their errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pair(true: np.ndarray, learned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true, learned = np.asarray(true, bool), np.asarray(learned, bool)
    if true.shape != learned.shape or true.ndim != 2:
        raise ValueError(f"graphs must be 2-D adjacency matrices of the same shape (inputs, outputs), "
                         f"got true {true.shape} and learned {learned.shape}")
    return true, learned


def shd(true: np.ndarray, learned: np.ndarray) -> int:
    """Structural Hamming distance of lagged graphs: missing plus extra edges.

    No reversals exist (time orders every edge), so this is the number of entries where the two differ."""
    true, learned = _pair(true, learned)
    return int((true != learned).sum())


def edge_f1(true: np.ndarray, learned: np.ndarray) -> dict[str, float | int]:
    """Precision, recall and F1 of the learned edges against the true ones, with the counts tp, fp, fn.

    Conventions for empty denominators, so that a perfect answer always scores 1 and a wrong one 0:
    - precision = 1.0 when nothing is learned (no claimed edge is wrong); recall = 1.0 when the truth has
      no edges (none can be missed).
    - f1 = 1.0 when both graphs are empty (identical), and 0.0 whenever tp = 0 but something is wrong
      (extra or missing edges), instead of the 0/0 of the harmonic mean.
    """
    true, learned = _pair(true, learned)
    tp = int((true & learned).sum())
    fp = int((~true & learned).sum())
    fn = int((true & ~learned).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    if tp == 0:
        f1 = 1.0 if fp == fn == 0 else 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def draw_graphs(path: str | Path, true: np.ndarray, learned: dict[str, np.ndarray], in_names: list[str],
                out_names: list[str], title: str = "") -> Path:
    """Save one PNG with the true graph and each learned graph as adjacency matrices, side by side.

    Rows are inputs at t, columns outputs at t+1. Learned panels colour correct edges, missing edges
    (false negatives) and extra edges (false positives) apart, with SHD and F1 in the panel title."""
    # A Figure on an Agg canvas, without pyplot: no global backend is chosen or changed, nothing stays open.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    true = np.asarray(true, bool)
    n_in, n_out = true.shape
    if (len(in_names), len(out_names)) != (n_in, n_out):
        raise ValueError(f"need {n_in} input and {n_out} output names for a {true.shape} graph, "
                         f"got {len(in_names)} and {len(out_names)}")
    # Codes 0 none, 1 correct / true edge, 2 missing, 3 extra; one colour map for every panel.
    colours = ["white", "#2b7bba", "#f5a623", "#d7263d"]
    labels = {1: "true / correct edge", 2: "missing (FN)", 3: "extra (FP)"}
    cmap = ListedColormap(colours)
    panels = [("true", true)]
    for name, adj in learned.items():
        t, a = _pair(true, adj)
        codes = np.where(t & a, 1, 0) + np.where(t & ~a, 2, 0) + np.where(~t & a, 3, 0)
        score = edge_f1(t, a)
        panels.append((f"{name}\nSHD {shd(t, a)}  F1 {score['f1']:.2f}", codes))

    # Cells of ~0.22 in keep 31 x 30 labelled matrices legible; small graphs still get a usable size. The
    # width slack keeps each square-celled panel height-limited: when the width limits it, constrained
    # layout lets the legend and suptitle overlap the panels' labels.
    cell = 0.22
    w = max(2.5, cell * n_out + 1.8)
    h = max(2.5, cell * n_in + 1.6)
    fig = Figure(figsize=(w * len(panels), h), layout="constrained")  # keeps suptitle and legend clear
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    font = 8 if max(n_in, n_out) <= 12 else 6
    for ax, (name, codes) in zip(axes[0], panels):
        ax.imshow(np.asarray(codes, int), cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest")
        ax.set_xticks(range(n_out), out_names, rotation=90, fontsize=font)
        ax.set_yticks(range(n_in), in_names, fontsize=font)
        # Thin grid between cells so single edges in a big sparse matrix can be located by row and column.
        ax.set_xticks(np.arange(-0.5, n_out), minor=True)
        ax.set_yticks(np.arange(-0.5, n_in), minor=True)
        ax.grid(which="minor", color="#dddddd", lw=0.5)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("output at t+1", fontsize=font + 1)
        ax.set_ylabel("input at t", fontsize=font + 1)
        ax.set_title(name, fontsize=font + 2)
    handles = [Patch(facecolor=colours[k], edgecolor="gray", label=v) for k, v in labels.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
