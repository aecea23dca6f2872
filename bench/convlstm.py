"""ConvLSTM on Moving MNIST through train.py: test MSE / MAE / SSIM per predicted frame, both baselines,
training throughput, peak memory and wall time.

    python -m bench.convlstm                       # the preset at its default budget -> results/convlstm.json
    python -m bench.convlstm --name convlstm_long total_steps=800 model.ss_steps=270 eval.every=400
    python -m bench.convlstm --name convlstm_cartpole_pixels --preset convlstm_cartpole_pixels

Extra ``key=value`` arguments are passed to train.py as overrides. One seed (video prediction on a fixed
test set; the seed only changes the training sequences and the initialisation). The run holds
/tmp/wm-bench.lock so no two timed runs share the machine's two cores.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import LOCK, RESULTS, ROOT, RUNS, read_run, write_results

PRESET = "convlstm_moving_mnist"
OPENSTL = {
    "source": "OpenSTL benchmark, Moving MNIST, ConvLSTM (Tan et al. 2023, OpenSTL NeurIPS D&B table)",
    "mse": 29.80, "ssim": 0.929, "epochs": 200, "train_sequences_per_epoch": 10000,
    "train_sequences": 200 * 10000, "hardware": "GPU",
    "model": "4 ConvLSTM layers x 128 channels, 5x5 kernels, patch 4, batch 16",
}


def plot(name: str, result: dict, strip: Path | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pf = result["per_frame"]
    frames = list(range(len(pf["model"]["mse"]) + 0))
    context = result["budget"]["context"]
    xs = [context + 1 + i for i in frames]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, ("mse", "mae", "ssim"), ("MSE per frame (summed over pixels)",
                                                            "MAE per frame (summed over pixels)",
                                                            "SSIM (data_range=1)")):
        for who, style in (("model", "C0-o"), ("copy_last", "C1--s"), ("blank", "C2:^")):
            ax.plot(xs, pf[who][key], style, ms=4, label={"model": "ConvLSTM", "copy_last": "copy last frame",
                                                          "blank": "blank (background)"}[who])
        ax.set_xlabel("frame")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    b = result["budget"]
    fig.suptitle(f"{name}: {b['total_steps']} steps x batch {b['batch_size']} on CPU, "
                 f"{result['wall_seconds']:.0f} s; test set {result['test_sequences']} sequences", fontsize=10)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    if strip is not None:
        shutil.copyfile(strip, RESULTS / f"{name}_strip.png")
    return path


def acquire(lock, wait: float | None) -> str:
    """Take the bench lock; with ``wait`` seconds set, give up after that long and say so."""
    if wait is None:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return "held"
    deadline = time.time() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return "held"
        except BlockingIOError:
            if time.time() >= deadline:
                return f"not held: still taken by other benchmarks after {wait:.0f} s; ran alongside them"
            time.sleep(2)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.convlstm")
    ap.add_argument("--name", default="convlstm")
    ap.add_argument("--preset", default=PRESET, help="experiment preset (convlstm_cartpole_pixels: action-conditioned)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lock-wait", type=float, default=None,
                    help="seconds to wait for the bench lock before running anyway (recorded); default: wait")
    ap.add_argument("overrides", nargs="*", help="extra train.py overrides (key=value)")
    args = ap.parse_args(sys.argv[1:])

    run_dir = RUNS / args.name / f"seed{args.seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [f"experiment={args.preset}", *args.overrides]
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"seed={args.seed}", f"hydra.run.dir={run_dir}",
           "progress=false"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        lock_state = acquire(lock, args.lock_wait)
        load_start = os.getloadavg()
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.time() - t0
        load_end = os.getloadavg()
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_rss_mb = usage.ru_maxrss / 1024  # Linux: KiB
    cpu_seconds = usage.ru_utime + usage.ru_stime  # what the run cost the CPU, whatever else was running

    run = read_run(run_dir)
    summary = run["summary"]
    cfg = (run_dir / "config.yaml").read_text()
    from omegaconf import OmegaConf

    conf = OmegaConf.create(cfg)
    per_frame = json.loads((run_dir / "eval_per_frame.json").read_text())["per_frame"]
    train_rows = [r for r in run["rows"] if "train/seq_per_s" in r]
    strips = sorted((run_dir / "media").glob("prediction_strip_*.png"))
    ev = {k: summary[k] for k in summary if k.startswith("eval/")}
    result = {
        "command": "python -m bench.convlstm " + " ".join(sys.argv[1:]),
        "train_command": "python train.py " + " ".join(overrides) + f" seed={args.seed}",
        "budget": {
            "total_steps": conf.total_steps, "batch_size": conf.model.batch_size,
            "train_sequences": conf.total_steps * conf.model.batch_size,
            "context": conf.data.context, "horizon": conf.data.horizon,
            "model": OmegaConf.to_container(conf.model), "device": OmegaConf.to_container(conf.device),
        },
        "data": OmegaConf.to_container(conf.data),
        "test_sequences": int(ev.get("eval/sequences", 0)),
        "status": summary["status"],
        "metrics": ev,
        "beats_baselines": {
            "mse_vs_blank": ev["eval/mse"] / ev["eval/mse_blank"],
            "mse_vs_copy_last": ev["eval/mse"] / ev["eval/mse_copy_last"],
        },
        "per_frame": per_frame,
        "train_sequences_per_second": train_rows[-1]["train/seq_per_s"] if train_rows else None,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "wall_seconds": round(wall, 1),
        "run_wall_seconds": summary["wall_seconds"],
        "cpu_seconds": round(cpu_seconds, 1),
        "eval_seconds": ev.get("eval/seconds"),
        "bench_lock": lock_state,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
        "train_curve": [[r["step"], r["train/mse_frame"]] for r in train_rows],
        "reference_openstl": OPENSTL,
    }
    path = write_results(args.name, result)
    plot(args.name, result, strips[-1] if strips else None)
    print(f"wrote {path}: mse {ev['eval/mse']:.1f} (copy-last {ev['eval/mse_copy_last']:.1f}, blank "
          f"{ev['eval/mse_blank']:.1f}), ssim {ev['eval/ssim']:.3f}, {result['train_sequences_per_second']:.2f} "
          f"seq/s, peak {peak_rss_mb:.0f} MB, {wall:.0f} s")


if __name__ == "__main__":
    main()
