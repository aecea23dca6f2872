"""Pixel physics (issue 19): C-SWM vs the same networks trained by reconstruction (Hits@1 and MRR of k-step
latent predictions, k = 1, 5, 10) and ConvLSTM's frame rollout MSE, on the same 3-body physics frames, 3 seeds.

    python -m bench.cswm [--seeds 0 1 2] [--steps N] [--convlstm-steps N] [--parallel 2] [data.key=value ...]
                                                                  # -> results/cswm.json + .png

Every run goes through train.py with ``device.threads=1``: ``experiment=cswm_physics`` (model.loss=contrastive),
the same with ``model.loss=reconstruction`` (identical networks, data, steps, batch and learning rate: only the
loss differs) and ``experiment=convlstm_physics``. Each run's seed draws its own data (data=physics_frames
follows data=nbody: everything from the run seed), so seeds differ in data and weights. The ranking set is the
run's test episodes (data.test, reported as ``ranking_set_size``): chance Hits@1 is 1 / that. ``_no_transition``
ranks the encoding of obs_0 itself against the targets: what the transition adds. ConvLSTM is given frames 0-1
(what C-SWM's obs_0 holds) and predicts frames 2-11; its MSE is summed over a frame's pixels and channels
(frames in [0, 1]), with the copy-last-frame and blank baselines. Extra ``data.*`` overrides go to every run
(a smoke test: ``--steps 20 --convlstm-steps 10 data.train=50 data.test=100``).

``reference``: how predictable the scenes are from pixels at all. The true simulator, started from each test
episode's positions in frames 0 and 1 with Gaussian errors of 0.1 or 0.3 px (and its true velocity plus the error
those put into a frame difference), ranked alike by the positions at frames k and k + 1: with 0.3 px errors it
gets Hits@1 0.15 at 10 steps (seed 0), so 10-step ranking asks for sub-pixel precision.

The issue's bars (``bars``): C-SWM Hits@1 >= 0.9 at 1 step, and above the reconstruction model at 10 steps
(medians over seeds). The PNG: Hits@1 and MRR against k per model, ConvLSTM's MSE per predicted frame.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import RUNS, save_figure, spread, train_seed, write_results

STEPS = (1, 5, 10)
RANKING = [f"{m}_{k}{s}" for s in ("", "_no_transition") for m in ("hits1", "mrr") for k in STEPS]
MODELS = {"cswm": ["experiment=cswm_physics"],
          "reconstruction": ["experiment=cswm_physics", "model.loss=reconstruction"],
          "convlstm": ["experiment=convlstm_physics"]}
VIDEO = ("mse", "mse_copy_last", "mse_blank", "ssim")


def run(name: str, model: str, seed: int, steps: int, extra: list[str], lock: bool = True) -> dict:
    budget = [f"total_steps={steps}", f"eval.every={max(1, steps // 4)}", f"checkpoint.every={steps}"]
    metric = "eval/mse" if model == "convlstm" else "eval/hits1_1"
    rec = train_seed(f"{name}_{model}", [*MODELS[model], "device.threads=1", *budget, *extra], seed, None,
                     metric=metric, reuse=True, lock=lock)
    run_dir = RUNS / f"{name}_{model}" / f"seed{seed}"
    final = json.loads((run_dir / "summary.json").read_text())
    out = {"model": model, "seed": seed, "wall_seconds": rec["wall_seconds"], "cpu_seconds": rec.get("cpu_seconds"),
           "curve": rec["curve"]}
    if model == "convlstm":
        out["metrics"] = {k: final.get(f"eval/{k}") for k in VIDEO}
        out["mse_per_frame"] = json.loads((run_dir / "eval_per_frame.json").read_text())["per_frame"]
        out["mse_per_frame"] = {who: v["mse"] for who, v in out["mse_per_frame"].items()}
    else:
        out["metrics"] = {k: final.get(f"eval/{k}") for k in RANKING}
        out["ranking_set_size"] = final.get("eval/ranking_set_size")
    return out


def reference(seed: int, extra: list[str], noise_px: float) -> dict[str, float]:
    """Hits@1 and MRR at STEPS of the true simulator from positions with ``noise_px`` pixel errors (docstring)."""
    import torch
    import yaml

    from wm.config import typed
    from wm.data.physics_frames import PhysicsFrames
    from wm.models.cswm import ranking

    over = {o.split("=", 1)[0][len("data."):]: yaml.safe_load(o.split("=", 1)[1])
            for o in extra if o.startswith("data.")}
    data = PhysicsFrames(typed(PhysicsFrames, {**over, "train": 1}, "data"), seed=seed)
    s, c = data.splits["test"], data.cfg
    rng = np.random.default_rng([seed, 1])
    err = rng.normal(0, noise_px / data.pixels_per_unit, (2, *s["pos"][:, 0].shape))  # frames 0 and 1
    pos, vel = s["pos"][:, 0] + err[0], s["vel"][:, 0] + (err[1] - err[0]) / c.dt
    xs, _ = data.physics.simulate(pos, vel, s["mass"].astype(np.float64), s["edges"].astype(np.float64), max(STEPS) + 1,
                                  c.dt, c.substeps)
    out = {}
    for k in STEPS:
        # the positions in frames k and k + 1 (what obs_k shows), flattened
        pred, true = (torch.as_tensor(np.concatenate([a[:, k], a[:, k + 1]], 1).reshape(len(a), -1),
                                      dtype=torch.float64) for a in (xs, s["pos"]))
        out[f"hits1_{k}"], out[f"mrr_{k}"] = ranking(pred, true)
    return out


def plot(name: str, runs: list[dict], references: dict[str, dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes[:2], ("hits1", "mrr")):
        for i, model in enumerate(("cswm", "reconstruction")):
            for suffix, style in (("", "-o"), ("_no_transition", ":x")):
                vals = np.array([[r["metrics"][f"{metric}_{k}{suffix}"] for k in STEPS] for r in runs
                                 if r["model"] == model], float)
                if not len(vals):
                    continue
                med = np.median(vals, 0)
                ax.errorbar(STEPS, med, yerr=[med - vals.min(0), vals.max(0) - med], fmt=style, color=f"C{i}",
                            capsize=3, label=f"{model}{' (no transition)' if suffix else ''}")
        for j, (label, ref) in enumerate(references.items()):
            ax.plot(STEPS, [ref[f"{metric}_{k}"]["median"] for k in STEPS], "--", color="gray", lw=1,
                    alpha=0.5 + 0.5 * j / max(1, len(references) - 1), label=label.replace("_", " "))
        ax.set_xticks(STEPS)
        ax.set_xlabel("prediction steps k")
        ax.set_ylabel({"hits1": "Hits@1", "mrr": "MRR"}[metric])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    size = next((r["ranking_set_size"] for r in runs if r.get("ranking_set_size")), None)
    axes[0].set_title(f"latent ranking among {size} test episodes (median, min-max over seeds)", fontsize=9)
    axes[0].legend(fontsize=7)
    ax = axes[2]
    video = [r for r in runs if r["model"] == "convlstm"]
    labels = {"model": "ConvLSTM", "copy_last": "copy last frame", "blank": "blank"}
    for who, style in (("model", "C2-o"), ("copy_last", "C1--s"), ("blank", "C7:^")):
        if video:
            curves = np.array([r["mse_per_frame"][who] for r in video], float)
            frames = np.arange(2, 2 + curves.shape[1])
            ax.plot(frames, np.median(curves, 0), style, ms=4, label=labels[who])
    ax.set_xlabel("predicted frame (frames 0-1 given)")
    ax.set_ylabel("MSE per frame (summed over pixels)")
    ax.set_title("ConvLSTM on the same frames (median over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.suptitle("3-body physics frames: C-SWM vs reconstruction-trained world model vs ConvLSTM", fontsize=10)
    return save_figure(fig, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000, help="train steps of both C-SWM runs (the preset's)")
    p.add_argument("--convlstm-steps", type=int, default=3000, help="train steps of ConvLSTM (its preset's)")
    p.add_argument("--name", default="cswm", help="results/<name>.json; run dirs outputs/bench/<name>_<model>")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides for every run (data.*)")
    args = p.parse_args()
    jobs = [(m, s) for s in args.seeds for m in MODELS]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda j: run(args.name, j[0], j[1], args.convlstm_steps if j[0] == "convlstm"
                                           else args.steps, args.overrides, lock=args.parallel == 1), jobs))
    table = {m: {k: spread([r["metrics"][k] for r in runs if r["model"] == m])
                 for k in (VIDEO if m == "convlstm" else RANKING)} for m in MODELS}
    for noise in (0.1, 0.3):
        refs = [reference(s, args.overrides, noise) for s in args.seeds]
        table[f"simulator_from_{noise}px_errors"] = {k: spread([r[k] for r in refs]) for k in refs[0]}
    med = {m: {k: table[m][k]["median"] for k in ("hits1_1", "hits1_10")} for m in ("cswm", "reconstruction")}
    by_seed = {s: {r["model"]: r["metrics"].get("hits1_10") for r in runs if r["seed"] == s} for s in args.seeds}
    bars = {"hits1": med, "cswm_hits1_1_at_least_0.9": med["cswm"]["hits1_1"] >= 0.9,
            "cswm_above_reconstruction_at_10": med["cswm"]["hits1_10"] > med["reconstruction"]["hits1_10"],
            "seeds_cswm_above_reconstruction_at_10": sum(v["cswm"] > v["reconstruction"] for v in by_seed.values())}
    write_results(args.name, {
        "command": "python -m bench.cswm " + " ".join([f"--seeds {' '.join(map(str, args.seeds))}",
                                                        f"--steps {args.steps}",
                                                        f"--convlstm-steps {args.convlstm_steps}", *args.overrides]),
        "budget": {"models": MODELS, "steps": args.steps, "convlstm_steps": args.convlstm_steps,
                   "overrides": args.overrides, "threads": 1},
        "ranking_set_size": sorted({r["ranking_set_size"] for r in runs if "ranking_set_size" in r}),
        "notes": "hits1_k / mrr_k: the k-step latent prediction of each test episode ranked against the encodings of "
                 "obs_k of all test episodes (ranking_set_size; chance Hits@1 = 1 / that); _no_transition: obs_0's "
                 "own encoding ranked alike. convlstm: frames 0-1 given, frames 2-11 predicted; mse summed over a "
                 "frame's pixels and channels, mean over predicted frames and test episodes.",
        "bars": bars, "wall_seconds": {m: spread([r["wall_seconds"] for r in runs if r["model"] == m]) for m in MODELS},
        "table": table, "runs": runs})
    plot(args.name, runs, {k: v for k, v in table.items() if k.startswith("simulator")})
    print(json.dumps({"bars": bars, "table": {m: {k: v["median"] for k, v in t.items()} for m, t in table.items()}},
                     indent=1))


if __name__ == "__main__":
    main()
