"""Diffusion (DIAMOND-style, model=diffusion) against ConvLSTM on Moving MNIST at equal training time.

    python -m bench.diffusion                      # full scale -> results/diffusion.json, .png, strips
    python -m bench.diffusion --name diffusion_tiny --convlstm-steps 4 --calibration-steps 4 --test-size 8

1. ConvLSTM's preset (experiment=convlstm_moving_mnist) trains through train.py; its training time is what
   its model measured inside its train steps (optimizer steps x batch / train/seq_per_s).
2. A short diffusion run (``--calibration-steps``) measures the diffusion preset's seconds per step; the
   full diffusion run (experiment=diffusion_moving_mnist) then gets total_steps = ConvLSTM's training time /
   that, so both models train for the same time on the same cores (one torch thread each; runs one after
   the other under the bench lock). The training times actually spent are recorded beside each other.
3. Both are scored on the same fixed test set: per-frame MSE / MAE summed over pixels and SSIM (as ConvLSTM
   reports them), and sharpness, the predicted / true mean gradient magnitude (wm/metrics/sharpness.py;
   ConvLSTM's is computed here from its checkpoint). Diffusion at 3 denoising steps (its preset) and 1
   (``model.extra_eval_steps``, the same trained network); copy-last-frame and blank baselines.
4. Imagined frames/s of the trained denoiser at batch 32 for 1 and 3 steps (one torch thread, a 10-frame
   autoregressive rollout from 4 given frames, best of ``--speed-repeats``).
5. A strip of the first test sequences: ground truth, ConvLSTM, diffusion at 1 and 3 steps, 10 given + 10
   predicted frames (results/<name>_strip.png).

Extra ``key=value`` arguments go to both train.py runs (e.g. data.digits=mnist_idx data.mnist_dir=...).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, RUNS, read_run, save_figure, train_seed, write_results

CONVLSTM = "convlstm_moving_mnist"
DIFFUSION = "diffusion_moving_mnist"
SPEED_BATCH = 32


def train_seconds(run_dir: Path, rate_key: str) -> tuple[float, int]:
    """(seconds the model spent in its train steps, optimizer steps) from its last logged throughput."""
    from omegaconf import OmegaConf

    conf = OmegaConf.load(run_dir / "config.yaml")
    run = read_run(run_dir)
    rate = [r[rate_key] for r in run["rows"] if rate_key in r][-1]  # a running mean over all train steps so far
    steps = int(run["summary"]["steps"])
    return steps * conf.model.batch_size / rate, steps


def load_model(run_dir: Path, data=None):
    """The trained model of a supervised run (and its dataset, built from the run's config), on the CPU."""
    from omegaconf import OmegaConf

    from wm import checkpoint
    from wm.config import build

    conf = OmegaConf.load(run_dir / "config.yaml")
    data = data if data is not None else build(conf.data, "data", seed=conf.seed)
    model = build(conf.model, "model", data=data, device="cpu")
    model.load_state_dict(checkpoint.load(run_dir)["model"])
    return model.eval(), data


def convlstm_sharpness(model, data, batch: int = 100) -> dict[str, Any]:
    """ConvLSTM's sharpness ratio over the whole test set (its evaluate() does not report one)."""
    import torch

    from wm.metrics.sharpness import SharpnessRatio

    sharp = SharpnessRatio()
    with torch.no_grad():
        for b in data.test_batches(batch):
            sharp.update(model.predict(b).cpu(), b["frames"][:, data.context :].float() / 255)
    return {"sharpness": sharp.compute(), "per_frame": sharp.per_frame()}


def imagined_fps(model, data, steps: int, repeats: int) -> float:
    """Frames per second of autoregressive rollouts (``data.horizon`` frames) of SPEED_BATCH sequences."""
    import torch

    batch = next(iter(data.test_batches(SPEED_BATCH)))
    x, a = model._prep(batch)
    if x.shape[0] < SPEED_BATCH:  # a tiny test set: repeat its sequences up to the batch
        reps = -(-SPEED_BATCH // x.shape[0])
        x = x.repeat(reps, 1, 1, 1, 1)[:SPEED_BATCH]
        a = a.repeat(reps, 1, 1)[:SPEED_BATCH] if a is not None else None
    g = torch.Generator().manual_seed(0)
    model.rollout(x, a, steps, g)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.rollout(x, a, steps, g)
        best = min(best, time.perf_counter() - t0)
    return SPEED_BATCH * data.horizon / best


def comparison_strip(rows: dict[str, Any], context: int, path: Path) -> Path:
    """For each sequence, one row per predictor (ground truth first): uint8 (N, T, C, H, W) each."""
    import imageio.v2 as imageio
    import numpy as np

    gt = next(iter(rows.values()))
    N, T, _, H, W = gt.shape
    out = []
    for i in range(N):
        for frames in rows.values():
            f = frames[i]
            f = f if f.shape[1] == 3 else np.repeat(f[:, :1], 3, axis=1)
            row = f.transpose(2, 0, 3, 1).reshape(H, T * W, 3).copy()
            row[:, context * W - 1 : context * W + 1] = (255, 0, 0)  # where prediction starts
            out += [row, np.full((2, T * W, 3), 128, np.uint8)]
        out.append(np.full((6, T * W, 3), 255, np.uint8))
    imageio.imwrite(path, np.concatenate(out[:-1], 0))
    return path


def plot(name: str, per_frame: dict[str, dict[str, list[float]]], context: int, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    styles = {"diffusion, 3 steps": "C0-o", "diffusion, 1 step": "C4-D", "ConvLSTM": "C3-v",
              "copy last frame": "C1--s", "blank": "C2:^"}
    for ax, key, label in zip(axes, ("mse", "ssim", "sharpness"),
                              ("MSE per frame (summed over pixels)", "SSIM (data_range=1)",
                               "sharpness (predicted / true gradient magnitude)")):
        for who, curves in per_frame.items():
            if curves.get(key):
                xs = [context + 1 + i for i in range(len(curves[key]))]
                ax.plot(xs, curves[key], styles[who], ms=4, label=who)
        ax.set_xlabel("frame")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, name)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.diffusion")
    ap.add_argument("--name", default="diffusion")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--convlstm-steps", type=int, default=None, help="ConvLSTM's total_steps (default: its preset's)")
    ap.add_argument("--calibration-steps", type=int, default=40, help="diffusion steps timed to set its budget")
    ap.add_argument("--test-size", type=int, default=None, help="test sequences (default: the dataset's 1,000)")
    ap.add_argument("--speed-repeats", type=int, default=3)
    ap.add_argument("--strip-sequences", type=int, default=4)
    ap.add_argument("overrides", nargs="*", help="extra train.py overrides for both runs (key=value)")
    args = ap.parse_args(sys.argv[1:])

    import torch
    from omegaconf import OmegaConf

    common = [*args.overrides] + ([f"data.test_size={args.test_size}"] if args.test_size else [])
    # 1. ConvLSTM's preset
    conv_over = [f"experiment={CONVLSTM}", *common]
    if args.convlstm_steps:
        steps = args.convlstm_steps
        conv_over += [f"total_steps={steps}", f"eval.every={steps}", f"model.ss_steps={max(1, steps * 2 // 5)}"]
    conv_rec = train_seed(f"{args.name}/convlstm", conv_over, args.seed, None, metric="eval/ssim")
    conv_dir = RUNS / args.name / "convlstm" / f"seed{args.seed}"
    conv_train_s, conv_steps = train_seconds(conv_dir, "train/seq_per_s")

    # 2. the diffusion budget: ConvLSTM's training time / the diffusion preset's seconds per step
    cal = args.calibration_steps
    cal_over = [f"experiment={DIFFUSION}", *common, f"total_steps={cal}", f"eval.every={cal}",
                f"checkpoint.every={cal}", "data.test_size=2", "model.extra_eval_steps=[]", "model.strip_sequences=1"]
    train_seed(f"{args.name}/calibration", cal_over, args.seed, None, metric="eval/ssim")
    cal_s, _ = train_seconds(RUNS / args.name / "calibration" / f"seed{args.seed}", "train/windows_per_s")
    diff_steps = max(1, round(conv_train_s / (cal_s / cal)))
    diff_over = [f"experiment={DIFFUSION}", *common, f"total_steps={diff_steps}", f"eval.every={diff_steps}",
                 f"checkpoint.every={diff_steps}", f"model.strip_sequences={args.strip_sequences}"]
    diff_rec = train_seed(f"{args.name}/diffusion", diff_over, args.seed, None, metric="eval/ssim")
    diff_dir = RUNS / args.name / "diffusion" / f"seed{args.seed}"
    diff_train_s, _ = train_seconds(diff_dir, "train/windows_per_s")

    # 3. metrics: both runs' summaries; ConvLSTM's sharpness and every strip from the checkpoints
    torch.set_num_threads(1)  # as the runs (device.threads=1)
    conv_sum, diff_sum = read_run(conv_dir)["summary"], read_run(diff_dir)["summary"]
    conv_model, data = load_model(conv_dir)
    diff_model, _ = load_model(diff_dir, data)  # the same dataset config: one test set for both
    conv_sharp = convlstm_sharpness(conv_model, data)
    conv_pf = json.loads((conv_dir / "eval_per_frame.json").read_text())["per_frame"]
    diff_pf = json.loads((diff_dir / "eval_per_frame.json").read_text())["per_frame"]

    def pick(summary: dict, suffix: str = "") -> dict[str, float]:
        return {k: summary[f"eval/{k}{suffix}"] for k in ("mse", "mae", "ssim", "ssim_range2", "sharpness")
                if f"eval/{k}{suffix}" in summary}

    metrics = {
        "diffusion_3_steps": pick(diff_sum),
        "diffusion_1_step": pick(diff_sum, "_steps1"),
        "convlstm": {**pick(conv_sum), "sharpness": conv_sharp["sharpness"]},
        "copy_last": pick(diff_sum, "_copy_last"),
        "blank": pick(diff_sum, "_blank"),
    }
    per_frame = {
        "diffusion, 3 steps": diff_pf["model"], "diffusion, 1 step": diff_pf["model_steps1"],
        "ConvLSTM": {**conv_pf["model"], "sharpness": conv_sharp["per_frame"]},
        "copy last frame": diff_pf["copy_last"], "blank": diff_pf["blank"],
    }
    # 4. speed of imagination
    speed = {f"{n}_step{'s' if n > 1 else ''}": round(imagined_fps(diff_model, data, n, args.speed_repeats), 1)
             for n in (1, 3)}
    # 5. strips
    n = args.strip_sequences
    gt, conv_pred = conv_model.strips(n)
    strips = {"ground truth": gt, "ConvLSTM": conv_pred,
              "diffusion, 1 step": diff_model.strips(n, 1)[1], "diffusion, 3 steps": diff_model.strips(n, 3)[1]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    strip = comparison_strip(strips, data.context, RESULTS / f"{args.name}_strip.png")
    for src in sorted((diff_dir / "media").glob("prediction_strip_*.png")):
        kind = "1step" if "steps1" in src.name else "3steps"
        shutil.copyfile(src, RESULTS / f"{args.name}_strip_diffusion_{kind}.png")

    conf = OmegaConf.load(diff_dir / "config.yaml")
    result = {
        "command": "python -m bench.diffusion " + " ".join(sys.argv[1:]),
        "train_commands": {
            "convlstm": "python train.py " + " ".join(conv_over) + f" seed={args.seed}",
            "diffusion": "python train.py " + " ".join(diff_over) + f" seed={args.seed}",
        },
        "budget": {
            "equal_training_time": "each model's own timer around its train steps (wall, one torch thread); "
                                   "diffusion total_steps = ConvLSTM's training seconds / the diffusion seconds "
                                   f"per step measured over {cal} calibration steps",
            "convlstm": {"total_steps": conv_steps, "train_seconds": round(conv_train_s, 1),
                         "run_cpu_seconds": conv_rec["cpu_seconds"], "run_wall_seconds": conv_rec["wall_seconds"]},
            "diffusion": {"total_steps": diff_steps, "train_seconds": round(diff_train_s, 1),
                          "calibration_seconds_per_step": round(cal_s / cal, 4),
                          "run_cpu_seconds": diff_rec["cpu_seconds"], "run_wall_seconds": diff_rec["wall_seconds"],
                          "model": OmegaConf.to_container(conf.model)},
            "train_time_ratio_diffusion_to_convlstm": round(diff_train_s / conv_train_s, 3),
        },
        "data": OmegaConf.to_container(conf.data),
        "test_sequences": int(diff_sum["eval/sequences"]),
        "metrics": metrics,
        "sharpness_definition": "sum over test sequences of the predicted frames' mean gradient magnitude / the "
                                "same for the true frames (wm/metrics/sharpness.py): 1 = as sharp as the truth",
        "goal_ssim_above_convlstm": {k: metrics[k]["ssim"] > metrics["convlstm"]["ssim"]
                                     for k in ("diffusion_1_step", "diffusion_3_steps")},
        "imagined_frames_per_second_batch32": {**speed, "torch_threads": 1,
                                               "what": f"{data.horizon}-frame autoregressive rollouts of "
                                                       f"{SPEED_BATCH} sequences, best of {args.speed_repeats}"},
        "per_frame": per_frame,
        "strips": {"comparison": strip.name, "rows": list(strips)},
    }
    path = write_results(args.name, result)
    title = (f"{args.name}: Moving MNIST, {result['test_sequences']} test sequences; training {conv_train_s:.0f} s "
             f"ConvLSTM ({conv_steps} steps) vs {diff_train_s:.0f} s diffusion ({diff_steps} steps)")
    plot(args.name, per_frame, data.context, title)
    print(f"wrote {path}")
    for k, m in metrics.items():
        print(f"  {k:18s} mse {m['mse']:.1f} ssim {m['ssim']:.3f} sharpness {m['sharpness']:.2f}")
    print(f"  train seconds: convlstm {conv_train_s:.0f}, diffusion {diff_train_s:.0f}; imagined frames/s at "
          f"batch {SPEED_BATCH}: {speed}")


if __name__ == "__main__":
    main()
