"""``python -m bench.hmm_kalman``: our batched torch HMM / Kalman code against hmmlearn and pykalman.

Speed, side by side in one process on this machine (both under /tmp/wm-bench.lock):
  - HMM forward (log-likelihood) on 256 sequences x 1,000 steps, 8 states: ours on the padded batch,
    hmmlearn's compiled forward looping over the same sequences (categorical, and Gaussian full-cov);
  - Kalman filter on 256 sequences x 1,000 steps, 4-d state, 2-d observations: ours on the batch,
    pykalman looping over the sequences.
Each timing is the median of several repeats, as wall time and as this process's CPU time (the machine
is shared; CPU time is the steadier figure). The largest relative difference of the log-likelihoods is
recorded with each case.

Fits through train.py (experiment=hmm_casino, kalman_tracking) over seeds, and the CartPole bridge
(wm.models.cartpole_kalman), add the accuracy figures. Writes bench/results/hmm_kalman.json and .png.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.common import LOCK, RESULTS, ROOT, RUNS, curve, read_run, spread, write_results

NAME = "hmm_kalman"


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "repeats": repeats,
            "wall_all": [round(x, 4) for x in walls], "cpu_all": [round(x, 4) for x in cpus], "_out": out}


def compare(ours: dict, ref: dict, a, b, label: str) -> dict[str, Any]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ours.pop("_out"), ref.pop("_out")
    return {"case": label, "ours": ours, "reference": ref,
            "speedup_wall": ref["wall_s"] / ours["wall_s"], "speedup_cpu": ref["cpu_s"] / ours["cpu_s"],
            "loglik_max_rel_diff": float(np.abs(a - b).max() / np.abs(b).max())}


def hmm_cases(B: int, T: int, K: int, repeats: int, ref_repeats: int) -> list[dict]:
    from hmmlearn import hmm

    from wm.models.hmm import CategoricalHMM, GaussianHMM

    rng = np.random.default_rng(0)
    pi, A = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), K)
    out = []
    # categorical, 6 symbols
    E = rng.dirichlet(np.ones(6), K)
    X = rng.integers(0, 6, size=(B, T))
    ours_m, Xt = CategoricalHMM(pi, A, E), torch.as_tensor(X)
    ref = hmm.CategoricalHMM(K, init_params="")
    ref.startprob_, ref.transmat_, ref.emissionprob_, ref.n_features = pi, A, E, 6
    ours = timed(lambda: ours_m.log_likelihood(Xt), repeats)
    theirs = timed(lambda: [ref.score(x[:, None]) for x in X], ref_repeats)
    out.append(compare(ours, theirs, ours["_out"], theirs["_out"],
                       f"HMM forward, categorical, B={B} T={T} K={K} M=6: ours vs hmmlearn"))
    # gaussian, full covariances, 2-d
    D = 2
    means = rng.normal(size=(K, D)) * 2
    W = rng.normal(size=(K, D, D))
    covars = W @ W.transpose(0, 2, 1) + 0.5 * np.eye(D)
    Y = rng.normal(size=(B, T, D)) * 2
    ours_g, Yt = GaussianHMM(pi, A, means, covars), torch.as_tensor(Y)
    refg = hmm.GaussianHMM(K, covariance_type="full", init_params="")
    refg.startprob_, refg.transmat_, refg.means_, refg.covars_, refg.n_features = pi, A, means, covars, D
    ours = timed(lambda: ours_g.log_likelihood(Yt), repeats)
    theirs = timed(lambda: [refg.score(y) for y in Y], ref_repeats)
    out.append(compare(ours, theirs, ours["_out"], theirs["_out"],
                       f"HMM forward, Gaussian full-cov, B={B} T={T} K={K} D={D}: ours vs hmmlearn"))
    return out


def kalman_case(B: int, T: int, repeats: int, ref_repeats: int) -> dict:
    from pykalman import KalmanFilter as PyKalman

    from wm.data.tracking import constant_velocity_params
    from wm.models.kalman import KalmanFilter

    truth = KalmanFilter(**constant_velocity_params(dt=1.0, q=0.05, r=1.0))
    _, y = truth.sample(T, torch.Generator().manual_seed(0), n=B)
    y[torch.rand(B, T, generator=torch.Generator().manual_seed(1)) < 0.1] = float("nan")
    p = {k: v.numpy() for k, v in truth.params().items()}
    ref = PyKalman(transition_matrices=p["F"], observation_matrices=p["H"], transition_covariance=p["Q"],
                   observation_covariance=p["R"], initial_state_mean=p["x0"], initial_state_covariance=p["P0"])
    ys = [np.ma.masked_invalid(s) for s in y.numpy()]

    def reference():
        lls = []
        for s in ys:  # filter() and loglikelihood() each run the filter; time filter() and take ll once
            ref.filter(s)
        return lls

    ours = timed(lambda: truth.filter(y), repeats)
    theirs = timed(reference, ref_repeats)
    ll_ref = [ref.loglikelihood(s) for s in ys[:16]]  # agreement on a subset (outside the timing)
    res = compare(ours, theirs, ours["_out"].loglik[:16].numpy(), ll_ref,
                  f"Kalman filter, B={B} T={T} n=4 m=2 (10% missing): ours vs pykalman")
    res["loglik_checked_sequences"] = 16
    return res


def fits(seeds: list[int]) -> dict[str, Any]:
    """experiment=hmm_casino and kalman_tracking through train.py, one seed at a time (the caller holds
    the bench lock, so bench.common.train_seed, which takes it itself, is not used)."""
    out: dict[str, Any] = {}
    for exp, metrics in (("hmm_casino", ["eval/loglik", "eval/loglik_true", "eval/state_accuracy",
                                         "eval/state_accuracy_true", "eval/emission_max_abs_error"]),
                         ("kalman_tracking", ["eval/loglik", "eval/loglik_true", "eval/state_rmse",
                                              "eval/state_rmse_true"])):
        per_seed = []
        for seed in seeds:
            run_dir = RUNS / f"{NAME}_{exp}" / f"seed{seed}"
            cmd = [sys.executable, str(ROOT / "train.py"), f"experiment={exp}", f"seed={seed}",
                   f"hydra.run.dir={run_dir}", "progress=false"]
            t0 = time.time()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{exp} seed {seed} failed:\n{proc.stderr[-3000:]}")
            run = read_run(run_dir)
            summary = run["summary"]
            rec = {"seed": seed, "steps": summary["steps"], "wall_seconds": round(time.time() - t0, 2),
                   "train_wall_seconds": summary["wall_seconds"], "curve": curve(run["rows"], "eval/loglik")}
            rec.update({k: summary.get(k) for k in metrics})
            rec["loglik_gap_rel"] = abs(summary["eval/loglik"] - summary["eval/loglik_true"]) / abs(
                summary["eval/loglik_true"])
            per_seed.append(rec)
        out[exp] = {"command": f"python train.py experiment={exp} seed=<seed>", "seeds": per_seed,
                    "summary": {k: spread([r[k] for r in per_seed]) for k in [*metrics, "loglik_gap_rel"]}}
    return out


def plot(cases: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [c["case"].split(":")[0].replace(", B=", "\nB=") for c in cases]
    x = np.arange(len(cases))
    for j, (who, color) in enumerate((("ours", "C3"), ("reference", "C0"))):
        vals = [c[who]["cpu_s"] for c in cases]
        ax.bar(x + (j - 0.5) * 0.38, vals, 0.38, color=color,
               label="ours (torch, batched)" if who == "ours" else "hmmlearn / pykalman (per sequence)")
        for xi, v in zip(x, vals):
            ax.text(xi + (j - 0.5) * 0.38, v, f"{v:.3g}s", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("CPU seconds (median)")
    ax.set_title("256 sequences x 1,000 steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.hmm_kalman")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-repeats", type=int, default=3, help="hmmlearn repeats")
    ap.add_argument("--kalman-ref-repeats", type=int, default=2, help="pykalman repeats (~1 min each)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--bridge-iters", type=int, default=150, help="EM iterations of the CartPole bridge")
    ap.add_argument("--skip-fits", action="store_true")
    ap.add_argument("--no-lock", action="store_true", help="smoke runs only: timings taken without the lock")
    args = ap.parse_args(sys.argv[1:])
    command = "python -m bench.hmm_kalman " + " ".join(sys.argv[1:])
    load = list(os.getloadavg())
    data: dict[str, Any] = {
        "command": command, "torch_threads": torch.get_num_threads(), "loadavg_at_start": load,
        "targets": {"hmm_forward": "ours <= hmmlearn (about 0.16 s for the categorical batch here)",
                    "kalman_filter": "ours >= 50x faster than pykalman (about 66 s for the batch here)"}}
    # accuracy first (not timed, so not under the lock); the file is written after each part
    from wm.models.cartpole_kalman import bridge

    data["cartpole_bridge"] = bridge(n_iter=args.bridge_iters)
    print("cartpole:", {k: v for k, v in data["cartpole_bridge"].items() if k != "history"}, flush=True)
    if not args.skip_fits:
        data["fits"] = fits(args.seeds)
        for exp, rec in data["fits"].items():
            print(exp, {k: v["median"] for k, v in rec["summary"].items()}, flush=True)
    write_results(NAME, {**data, "speed": "pending: waiting for the bench lock"})
    with open(LOCK, "w") as lock:  # timings: one benchmark at a time on this machine
        t_wait = time.time()
        if not args.no_lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
        data["lock_wait_seconds"] = round(time.time() - t_wait, 1)
        data["locked"] = not args.no_lock
        data["loadavg_when_timing_started"] = list(os.getloadavg())
        cases = hmm_cases(args.batch, args.steps, 8, args.repeats, args.ref_repeats)
        cases.append(kalman_case(args.batch, args.steps, args.repeats, args.kalman_ref_repeats))
        data["loadavg_when_timing_ended"] = list(os.getloadavg())
    for c in cases:
        print(f"{c['case']}: ours {c['ours']['wall_s']:.3f}s wall / {c['ours']['cpu_s']:.3f}s cpu, "
              f"reference {c['reference']['wall_s']:.2f}s / {c['reference']['cpu_s']:.2f}s, "
              f"x{c['speedup_cpu']:.1f} (cpu), loglik rel diff {c['loglik_max_rel_diff']:.1e}", flush=True)
    data["speed"] = cases
    path = write_results(NAME, data)
    plot(cases, RESULTS / f"{NAME}.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
