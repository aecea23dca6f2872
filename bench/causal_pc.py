"""The PC peer: causal-learn's PC algorithm on lagged discrete data, run in its own venv.

Peer libraries never go into the project's .venv, so ``peer_python`` builds a venv under
outputs/venvs/<name> once, and ``pc_graph`` runs bench/peers/run_pc.py with that venv's python on a
temporary .npz, reading back the lagged adjacency (inputs at t -> outputs at t+1) and PC's own wall time.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT

VENVS = ROOT / "outputs" / "venvs"
RUN_PC = ROOT / "bench" / "peers" / "run_pc.py"
# Exact pins so PC timings and graphs are reproducible; numpy pinned to what causal-learn resolved to here.
PC_PACKAGES = ["causal-learn==0.1.4.8", "numpy==2.4.6"]


def peer_python(name: str, packages: list[str]) -> Path:
    """Create (once) a venv at outputs/venvs/<name> with ``packages`` and return its python.

    A stamp file records the package list; a different list reinstalls into the same venv."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".wm-packages.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == packages:
        return python
    print(f"creating peer venv {venv} with {' '.join(packages)}", flush=True)
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                   check=True)
    stamp.write_text(json.dumps(packages) + "\n")  # written last: a failed install is retried next time
    return python


def pc_graph(x: np.ndarray, y: np.ndarray, alpha: float = 0.01, depth: int = -1, instantaneous: bool = True,
             timeout: float = 1800) -> tuple[np.ndarray, float]:
    """PC (G-square test, time tiers as background knowledge) on the columns [x, y]; with ``instantaneous``
    False, edges within a time slice are forbidden too (a lagged graph has none to find), so PC tests only the
    I x J edges from t to t+1, conditioning on their other neighbours.

    x: (n, I) integer-coded variables at t (the action may be the last column); y: (n, J) at t+1.
    Returns adj (I, J) bool, True where PC keeps an edge between x-column i and y-column j (directed or
    undirected: time fixes the direction), and PC's wall seconds measured inside the peer process."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"pc_graph needs x (n, I) and y (n, J) with the same n, got {x.shape} and {y.shape}")
    python = peer_python("causal_pc", PC_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="wm-pc-") as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, x=x.astype(np.int64), y=y.astype(np.int64), alpha=alpha, depth=depth,
                 instantaneous=instantaneous)
        try:
            proc = subprocess.run([str(python), str(RUN_PC), str(inp), str(out)], check=False,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"PC peer timed out after {timeout:.0f}s on x {x.shape}, y {y.shape}") from e
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise RuntimeError(f"PC peer failed (exit {proc.returncode}): {last}")
        res = np.load(out)
        return res["adj"].astype(bool), float(res["seconds"])
