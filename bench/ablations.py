"""A named sweep (sweep/<name>.yaml) run job by job, resumable, with its rliable report under docs/reports/<name>/.

    WM_BENCH_LOCK=0 python -m bench.ablations dreamer_ablation --threshold 475 --baseline +ablation=dreamer_v3
    python -m bench.ablations mbpo_rollout_length --parallel 2
    python -m bench.ablations dreamer_ablation --seeds 0 1      # a study cut short: its first seeds only
    python -m bench.ablations worldmodels_ablation --set model.stages.mdnrnn_from=<run dir> ...  # shared inputs

`python train.py sweep=<name>` runs the same grid through Hydra's launcher; this runs each job of the grid as
a single train.py run with the sweep's own settings (`sweep=<name> hydra.mode=RUN` plus the job's overrides),
so that a study spanning sessions resumes where it stopped (completed runs are reused, a stopped one continues
from its checkpoint) and each run's CPU time is measured (wait4). Jobs go seed by seed (every variant's seed 0
first), so a study cut short still compares variants on equal seeds.

Writes bench/results/ablation_<name>.json (per run: final = mean of the last 3 evals, curve, wall and CPU
seconds; the machine) and docs/reports/<name>/ via wm.report, with run.md (the command, the budget, CPU and
wall totals) and, if present, the hand-written findings.md placed under the report's table.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bench.common import ROOT, RUNS, final_over_last, iqm_interval, machine, spread, train_seed, write_results
from wm import report

REPORTS = ROOT / "docs" / "reports"


def grid(name: str) -> tuple[list[dict[str, str]], list[int]]:
    """The sweep's jobs: one dict of overrides per variant (the cartesian product of its sweeper params
    other than seed), and its seeds."""
    path = ROOT / "sweep" / f"{name}.yaml"
    if not path.exists():
        choices = ", ".join(sorted(p.stem for p in (ROOT / "sweep").glob("*.yaml")))
        raise SystemExit(f"error: no sweep '{name}' in sweep/ (choices: {choices})")
    params = {str(k): str(v) for k, v in OmegaConf.load(path).hydra.sweeper.params.items()}
    seeds = [int(s) for s in params.pop("seed", "0").split(",")]
    keys = list(params)
    values = [params[k].split(",") for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)], seeds


def label(variant: dict[str, str]) -> str:
    """A run-dir name from the values that vary (keys with one value are left out)."""
    return "_".join(f"{k.lstrip('+').split('.')[-1]}-{v}" for k, v in variant.items()) or "default"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ablations", description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep in sweep/ (dreamer_ablation, mbpo_rollout_length, ...)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="a subset of the sweep's seeds")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (one torch thread each)")
    p.add_argument("--threshold", type=float, default=None, help="steps to and stability at this return")
    p.add_argument("--baseline", default=None, metavar="KEY=VALUE",
                   help="the variant every other is compared with (probability of improvement)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="common",
                   help="an override every run of the study takes (e.g. the World Models V and M of one run)")
    args = p.parse_args(argv)
    if bad := [o for o in args.common if "=" not in o]:
        raise SystemExit(f"error: --set {bad[0]}: give KEY=VALUE")

    variants, seeds = grid(args.sweep)
    seeds = args.seeds if args.seeds is not None else seeds
    varied = [k for k in variants[0] if len({v[k] for v in variants}) > 1]
    names = {label({k: v[k] for k in varied}): v for v in variants}
    if len(names) != len(variants):  # two varied keys ending in the same name would share run dirs
        raise SystemExit(f"error: sweep {args.sweep}: its variants' run-dir names collide ({', '.join(varied)})")
    options = list(dict.fromkeys(f"{k}={v[k]}" for v in variants for k in varied))
    if args.baseline is not None and (len(varied) != 1 or args.baseline not in options):
        raise SystemExit(f"error: --baseline {args.baseline}: give one of {', '.join(options)} "
                         f"(a sweep that varies one key)")
    jobs = [(n, s) for s in seeds for n in names]  # seed-major: variants stay on equal seeds

    stop = threading.Event()  # a failed or stopped run ends the study: the queued runs do not start

    def one(job: tuple[str, int]) -> dict[str, Any] | None:
        if stop.is_set():
            return None
        n, seed = job
        overrides = [f"sweep={args.sweep}", "hydra.mode=RUN", *args.common,
                     *(f"{k}={v}" for k, v in names[n].items())]
        try:
            rec = train_seed(f"{args.sweep}/{n}", overrides, seed, args.threshold, reuse=True, resume=True,
                             lock=False, keep=True)
        except BaseException:
            stop.set()
            raise
        return {"variant": n, **final_over_last(rec)}

    with ThreadPoolExecutor(args.parallel) as pool:
        try:
            records = list(pool.map(one, jobs))
        except BaseException:
            stop.set()
            raise

    by_variant = {n: [r for r in records if r["variant"] == n] for n in names}
    cpu = [r.get("cpu_seconds") or 0.0 for r in records]
    results = {
        "sweep": args.sweep, "seeds": seeds,
        "command": f"WM_BENCH_LOCK=0 python -m bench.ablations {' '.join(sys.argv[1:] if argv is None else argv)}",
        "cpu_seconds_total": round(sum(cpu), 1), "runs": len(records),
        "variants": {n: {"overrides": names[n], "final": spread([r["final"] for r in rs]),
                         "final_iqm": iqm_interval([r["final"] for r in rs]),
                         "cpu_seconds": spread([r.get("cpu_seconds") for r in rs]), "seeds": rs}
                     for n, rs in by_variant.items() if rs},
    }
    write_results(f"ablation_{args.sweep}", results)

    out = REPORTS / args.sweep
    out.mkdir(parents=True, exist_ok=True)
    steps = sorted({r["curve"][-1][0] for r in records if r["curve"]})
    (out / "run.md").write_text(
        f"Made by `{results['command']}` (the grid of sweep/{args.sweep}.yaml, "
        f"seeds {', '.join(map(str, seeds))}): {len(records)} runs of {', '.join(f'{s:,}' for s in steps)} "
        f"env steps, {sum(cpu) / 3600:.2f} CPU-hours in all (median {np.median(cpu):.0f} CPU-s per run), "
        f"on {machine()['cpu']}; per-run records in "
        f"[bench/results/ablation_{args.sweep}.json](../../../bench/results/ablation_{args.sweep}.json).\n")
    notes = [out / "run.md"] + ([out / "findings.md"] if (out / "findings.md").exists() else [])
    argv_report = [str(RUNS / args.sweep / n / f"seed{s}") for n, s in jobs]
    argv_report += ["--out", str(out), "--notes", *map(str, notes)]
    if args.threshold is not None:
        argv_report += ["--threshold", str(args.threshold)]
    if args.baseline is not None:
        argv_report += ["--pairs", *(f"{o}:{args.baseline}" for o in options if o != args.baseline)]
    report.main(argv_report)


if __name__ == "__main__":
    main()
