"""Run causal-learn's PC on lagged discrete data; executed by bench/causal_pc.py inside the peer venv.

Usage: run_pc.py IN.npz OUT.npz. IN holds x (n, I), y (n, J) integer codes, alpha, depth (-1: no limit) and
instantaneous (0: no edge within a time slice, so PC only tests edges from t to t+1);
OUT gets adj (I, J) bool (an edge of any mark between x-column i and y-column j) and PC's wall seconds.
Imports only numpy and causallearn: this file must run without the project installed.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from causallearn.graph.GraphNode import GraphNode
from causallearn.search.ConstraintBased.PC import pc
from causallearn.utils.PCUtils.BackgroundKnowledge import BackgroundKnowledge


def main(inp: str, out: str) -> None:
    data = np.load(inp)
    x, y = data["x"], data["y"]
    alpha, depth, instantaneous = float(data["alpha"]), int(data["depth"]), bool(data["instantaneous"])
    n_in, n_out = x.shape[1], y.shape[1]
    # PC names nodes X1..Xn by default; GraphNode compares by name, so these match the graph's nodes.
    names = [f"X{k + 1}" for k in range(n_in + n_out)]
    bk = BackgroundKnowledge()
    for k, name in enumerate(names):
        bk.add_node_to_tier(GraphNode(name), 0 if k < n_in else 1)  # tier 1 (t+1) never points into t
    if not instantaneous:  # forbidden both ways, these edges are removed untested
        bk.forbid_within_tier(0)
        bk.forbid_within_tier(1)
    t0 = time.perf_counter()
    # max_k is causal-learn's depth; -1 there would stop before the first test, so "no limit" is None.
    cg = pc(np.hstack([x, y]).astype(np.int64), alpha=alpha, indep_test="gsq", background_knowledge=bk,
            show_progress=False, node_names=names, max_k=None if depth < 0 else depth)
    seconds = time.perf_counter() - t0
    g = cg.G.graph  # g[i, j] != 0 iff there is an edge between i and j (marks say which way)
    adj = (g[:n_in, n_in:] != 0) | (g[n_in:, :n_in] != 0).T
    np.savez(out, adj=adj, seconds=seconds)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
