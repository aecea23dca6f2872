"""N-body state dynamics (issue 19): Interaction Network vs constant velocity vs an MLP on the state, trained on
6-body softened gravity and tested on 3, 6 and 12 bodies, 3 seeds each.

    python -m bench.nbody [--seeds 0 1 2] [--steps 20000]      # -> results/nbody.json + .png

Every run is ``python train.py experiment=nbody_interaction_net model=<model> seed=<s> device.threads=1``:
1,000 training trajectories of 100 steps (the run seed draws them, so seeds differ in data and weights), 100
test trajectories per body count. interaction_net and state_mlp train ``--steps`` one-step updates with a cosine
learning-rate decay; constant_velocity has nothing to train (total_steps=1). The table holds the final
evaluation's metrics (wm/models/interaction_net.py: one-step MSE of positions and velocities, position MSE over
10- and 50-step rollouts, median relative energy drift after 100 steps), median / min / max over seeds, and the
simulator's own energy drift for reference; state_mlp takes 6 bodies only, so its 3 and 12 entries are null.
The PNG: position MSE vs rollout step per body count (mean over test trajectories, median over seeds). The
issue's bar: the Interaction Network's 6-body one-step MSE at least 10x below constant velocity's, and below
the MLP's (``bars``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import RUNS, save_figure, spread, train_seed, write_results

MODELS = {"interaction_net": [], "state_mlp": [], "constant_velocity": ["total_steps=1"]}
COUNTS = (3, 6, 12)
METRICS = ("one_step_mse", "rollout_mse_10", "rollout_mse_50", "energy_drift")
BASE = ["experiment=nbody_interaction_net", "device.threads=1"]


def run(name: str, model: str, seed: int, steps: int, extra: list[str]) -> dict:
    budget = MODELS[model] or [f"total_steps={steps}", f"eval.every={max(1, steps // 4)}",
                               f"checkpoint.every={steps}"]
    rec = train_seed(f"{name}_{model}", [*BASE, f"model={model}", *budget, *extra], seed, None,
                     metric="eval/one_step_mse_6", reuse=True)
    run_dir = RUNS / f"{name}_{model}" / f"seed{seed}"
    final = json.loads((run_dir / "summary.json").read_text())
    horizon = json.loads((run_dir / "horizon.json").read_text())["position_mse"]
    return {"model": model, "seed": seed, "wall_seconds": rec["wall_seconds"], "cpu_seconds": rec.get("cpu_seconds"),
            "metrics": {f"{m}_{k}": final.get(f"eval/{m}_{k}") for m in METRICS for k in COUNTS},
            "curve_one_step_mse_6": rec["curve"], "horizon_mean": {k: v["mean"] for k, v in horizon.items()}}


def simulator_drift(seed: int, extra: list[str]) -> dict[str, float]:
    """The simulated trajectories' own median relative energy drift over 100 steps, per body count."""
    import yaml

    from wm.config import typed
    from wm.data.nbody import NBody

    over = {o.split("=", 1)[0][len("data."):]: yaml.safe_load(o.split("=", 1)[1]) for o in extra if o.startswith("data.")}
    data = NBody(typed(NBody, {**over, "train": 1, "test_bodies": list(COUNTS)}, "data"), seed=seed)
    out = {}
    for k in COUNTS:
        e = data.splits[f"test_{k}"]["energy"]
        out[f"energy_drift_{k}"] = float(np.median(np.abs(e[:, 100] - e[:, 0]) / np.abs(e[:, 0])))
    return out


def plot(name: str, runs: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(COUNTS), figsize=(4 * len(COUNTS), 3.6), sharey=True)
    for ax, k in zip(axes, COUNTS):
        for i, model in enumerate(MODELS):
            curves = [r["horizon_mean"][str(k)] for r in runs if r["model"] == model and str(k) in r["horizon_mean"]]
            if not curves:
                continue
            arr = np.array([[np.nan if v is None else v for v in c] for c in curves], float)
            ax.plot(np.arange(1, arr.shape[1]), np.nanmedian(arr, 0)[1:], color=f"C{i}", label=model)
        ax.set_yscale("log")
        ax.set_title(f"{k} bodies" + (" (trained on 6)" if k != 6 else ""), fontsize=10)
        ax.set_xlabel("rollout step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("position MSE (mean over test trajectories)")
    axes[COUNTS.index(6)].legend(fontsize=8)  # the panel where every model has a line
    fig.suptitle("N-body gravity: error vs horizon (median over seeds)", fontsize=10)
    return save_figure(fig, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20000, help="train steps of interaction_net and state_mlp")
    p.add_argument("--name", default="nbody", help="results/<name>.json; run dirs outputs/bench/<name>_<model>")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides for every run (a smoke test: data.train=100)")
    args = p.parse_args()
    runs = [run(args.name, m, s, args.steps, args.overrides) for s in args.seeds for m in MODELS]
    table = {m: {key: spread([r["metrics"][key] for r in runs if r["model"] == m])
                 for key in (f"{x}_{k}" for x in METRICS for k in COUNTS)} for m in MODELS}
    drift = [simulator_drift(s, args.overrides) for s in args.seeds]
    table["simulator"] = {key: spread([d[key] for d in drift]) for key in drift[0]}
    med = {m: table[m]["one_step_mse_6"]["median"] for m in MODELS}
    bars = {"one_step_mse_6": med, "constant_velocity_over_interaction_net": med["constant_velocity"] / med["interaction_net"],
            "ten_times_below_constant_velocity": med["interaction_net"] * 10 <= med["constant_velocity"],
            "below_state_mlp": med["interaction_net"] < med["state_mlp"]}
    wall = {m: spread([r["wall_seconds"] for r in runs if r["model"] == m]) for m in MODELS}
    write_results(args.name, {
        "command": "python -m bench.nbody " + " ".join([f"--seeds {' '.join(map(str, args.seeds))}",
                                                         f"--steps {args.steps}", *args.overrides]),
        "budget": {"base": BASE, "steps": args.steps, "overrides": args.overrides, "models": MODELS},
        "notes": "state_mlp takes the training count (6 bodies) only: its 3- and 12-body entries are null. "
                 "one_step_mse: positions and velocities; rollout_mse_h: positions, mean over the first h steps; "
                 "energy_drift: |E_100 - E_0| / |E_0|, median over test trajectories.",
        "bars": bars, "wall_seconds": wall, "table": table, "runs": runs})
    plot(args.name, runs)
    print(json.dumps({"bars": bars, "one_step_mse": {m: {k: table[m][f"one_step_mse_{k}"]["median"] for k in COUNTS}
                                                      for m in MODELS}}, indent=1))


if __name__ == "__main__":
    main()
