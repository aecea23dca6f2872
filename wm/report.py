"""Compare runs: ``python -m wm.report <multirun dir or run dirs ...> --out <dir>``.

Finds every run dir (one with metrics.jsonl) under the given paths, groups runs by what was varied
(their Hydra overrides minus the seed), aggregates each run's final performance (the mean of its last
``--last`` evaluations) over seeds with rliable (Agarwal et al. 2021): IQM, mean and, with a threshold, the
optimality gap, each with a 95% stratified-bootstrap interval; the performance profile of every group; and
the probability that one group improves on another (``--pairs``, or every pair). It writes report.md with
PNG plots (return vs env steps with bands, final performance, performance profiles) and the table of steps to
a threshold, how well runs stay there, and wall time. Runs that failed, were interrupted or are still
running are listed as such and left out of the aggregates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

IGNORED_OVERRIDES = ("seed=", "hydra.", "resume=", "progress=", "device", "logger", "sweep=")


@dataclass
class Run:
    path: Path
    label: str
    seed: int
    status: str
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def curve(self, metric: str) -> np.ndarray:
        return np.array([[r["step"], r[metric]] for r in self.rows if r.get(metric) is not None]).reshape(-1, 2)


def find_runs(paths: list[Path], budget: int | None = None) -> list[Run]:
    dirs = sorted({m.parent for p in paths for m in ([p / "metrics.jsonl"] if (p / "metrics.jsonl").exists()
                                                     else p.rglob("metrics.jsonl"))})
    runs = [load_run(d) for d in dirs]
    if budget is not None:
        runs = [at_budget(r, budget) for r in runs]
    # overrides every run shares (a common budget, say) say nothing about the difference: drop them
    common = set.intersection(*(set(r.label.split(" ")) for r in runs)) if len(runs) > 1 else set()
    for run in runs:
        run.label = " ".join(o for o in run.label.split(" ") if o not in common) or run.label
    return runs


def load_run(path: Path) -> Run:
    rows = []
    for line in (path / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a run killed mid-write: the last line may be partial
            break
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").exists() else {}
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").exists() else {}
    return Run(path, label_of(path, config), int(config.get("seed", -1)), summary.get("status", "unknown"),
               rows, summary)


def at_budget(run: Run, budget: int) -> Run:
    """The run as if it had stopped after ``budget`` env steps: rows past it dropped, the last logged
    value of each metric at or before it taken as final. A run whose log reaches the budget counts as
    completed there (a longer run, or one interrupted later, still ran the budget); one that stopped
    short keeps its status. ``total_steps`` overrides then differ only beyond the budget: dropped from
    the label."""
    rows = [r for r in run.rows if r.get("step", 0) <= budget]
    summary = dict(run.summary)
    if run.rows and max(r.get("step", 0) for r in run.rows) >= budget:
        summary |= {k: v for r in rows for k, v in r.items() if k not in ("step", "time")}
        summary |= {"status": "completed", "steps": budget,
                    "wall_seconds": max((r.get("time", 0.0) for r in rows), default=0.0)}
    label = " ".join(o for o in run.label.split(" ") if not o.startswith("total_steps="))
    return Run(run.path, label or run.label, run.seed, summary.get("status", run.status), rows, summary)


def label_of(path: Path, config: dict) -> str:
    """What distinguishes this run from its siblings: its overrides without seed/hydra/logging keys."""
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    kept = [o for o in overrides or [] if not o.lstrip("+~").startswith(IGNORED_OVERRIDES)]
    if kept:
        return " ".join(kept)
    names = [str((config.get(g) or {}).get("name", "?")) for g in ("env", "model", "agent")]
    return "/".join(names)


REPS = 2000  # bootstrap resamples (rliable's default for profiles; its 50,000 for intervals is slow and changes little)


def iqm(x: np.ndarray) -> float:
    return float(stats.trim_mean(x, 0.25))


def iqm_of(scores: np.ndarray) -> float:
    """rliable's IQM of a runs x tasks score matrix (the statistic ``interval`` bootstraps)."""
    from rliable import metrics

    return metrics.aggregate_iqm(scores)


@contextmanager
def seeded_bootstrap(seed: int):
    """rliable's stratified bootstraps draw their indices from numpy's global RNG, not from the ``random_state``
    they are given, so a report's intervals moved from one make to the next: seed that RNG for the call and put
    the caller's state back after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # rliable hands arch a RandomState, which arch now deprecates
            warnings.simplefilter("ignore", FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(state)


def interval(scores: dict[str, np.ndarray], func, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """rliable's point estimate and 95% stratified-bootstrap interval of ``func`` for each group's final scores
    (runs x tasks; one task per report: the bootstrap resamples runs). (value, low, high)."""
    from rliable import library as rly

    if not scores:
        return {}
    with seeded_bootstrap(seed) as rng:
        points, cis = rly.get_interval_estimates({k: v.reshape(len(v), -1) for k, v in scores.items()},
                                                 lambda s: np.array([func(s)]), reps=REPS, random_state=rng)
    return {k: (float(points[k][0]), float(cis[k][0, 0]), float(cis[k][1, 0])) for k in scores}


def improvement(scores: dict[str, np.ndarray], pairs: list[tuple[str, str]], seed: int = 0) -> list[dict]:
    """P(X > Y): the probability that a run of group X scores above a run of group Y (ties count half),
    with rliable's 95% stratified-bootstrap interval, for each pair (X, Y)."""
    from rliable import library as rly
    from rliable import metrics

    todo = {f"{x} > {y}": [scores[x][:, None], scores[y][:, None]] for x, y in pairs if x in scores and y in scores}
    if not todo:
        return []
    with seeded_bootstrap(seed) as rng:
        points, cis = rly.get_interval_estimates(todo, metrics.probability_of_improvement, reps=REPS,
                                                 random_state=rng)
    return [{"pair": k, "x": k.split(" > ")[0], "y": k.split(" > ")[1], "p": float(points[k]),
             "ci": (float(np.ravel(cis[k])[0]), float(np.ravel(cis[k])[1]))} for k in todo]


def optimality_gap(threshold: float):
    """rliable's optimality gap in raw units: how far runs fall short of ``threshold`` on average."""
    from rliable import metrics

    return lambda s: metrics.aggregate_optimality_gap(s, gamma=threshold)


def final_of(values, last: int) -> float | None:
    """A run's final performance: the mean of its last ``last`` evaluations, not its best one (a policy that
    reaches 500 and falls to 15 has not solved the task)."""
    tail = [float(v) for v in values][-last:]
    return float(np.mean(tail)) if tail else None


def stability(values, threshold: float, within: float = 0.05) -> float | None:
    """The share of evaluations after the first at ``threshold`` that stay within ``within`` of it (None: the
    threshold was never reached, or nothing was evaluated after)."""
    values = [float(v) for v in values]
    first = next((i for i, v in enumerate(values) if v >= threshold), None)
    after = values[first + 1:] if first is not None else []
    return sum(v >= (1 - within) * threshold for v in after) / len(after) if after else None


def first_at(curve: np.ndarray, threshold: float) -> float | None:
    hit = np.flatnonzero(curve[:, 1] >= threshold) if len(curve) else []
    return float(curve[hit[0], 0]) if len(hit) else None


def aggregate(runs: list[Run], metric: str, threshold: float | None, last: int = 3) -> list[dict]:
    """Per group of runs: final performance (each run's mean of its last ``last`` evaluations) aggregated
    over seeds, and with a threshold the steps to reach it and how well runs stay there."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.label].append(run)
    table = []
    for label, members in groups.items():
        done = [r for r in members if r.status == "completed" and r.summary.get(metric) is not None]
        curves = [r.curve(metric) for r in done]  # (n, 2): step, value
        finals = np.array([final_of(c[:, 1], last) if len(c) else r.summary[metric] for r, c in zip(done, curves)],
                          float)
        row = {"label": label, "runs": len(members), "completed": len(done),
               "not_completed": {r.path.name: r.status for r in members if r not in done}}
        if len(finals):
            row |= {"finals": finals.tolist(), "iqm": iqm(finals), "mean": float(finals.mean()),
                    "wall_median": float(np.median(
                        [r.summary.get("wall_seconds", np.nan) for r in done])),
                    "steps_median": float(np.median([r.summary.get("steps", np.nan) for r in done]))}
            if threshold is not None:
                hits = [first_at(c, threshold) for c in curves]
                reached = [h for h in hits if h is not None]
                stays = [s for c in curves if (s := stability(c[:, 1], threshold)) is not None]
                row |= {"reached": len(reached), "steps_to_threshold_median":
                        float(np.median(reached)) if reached else None,
                        "stability_median": float(np.median(stays)) if stays else None}
        table.append(row)
    from rliable import metrics

    scores = {r["label"]: np.array(r["finals"]) for r in table if "finals" in r}
    stats_of = {"iqm": iqm_of, "mean": metrics.aggregate_mean}
    if threshold is not None:
        stats_of["gap"] = optimality_gap(threshold)
    for name, func in stats_of.items():
        for label, (value, low, high) in interval(scores, func).items():
            row = next(r for r in table if r["label"] == label)
            row[name], row[f"{name}_ci"] = value, (low, high)
    return sorted(table, key=lambda r: r["label"])


def plot_curves(runs: list[Run], metric: str, out: Path, threshold: float | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for run in runs:
        c = run.curve(metric)
        if len(c):
            groups[run.label].append(c)
    for i, (label, curves) in enumerate(sorted(groups.items())):
        grid = np.unique(np.concatenate([c[:, 0] for c in curves]))
        ys = np.stack([np.interp(grid, c[:, 0], c[:, 1], right=np.nan) for c in curves])
        mean = np.nanmean(ys, axis=0)
        ax.plot(grid, mean, color=f"C{i}", label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            low, high = np.nanpercentile(ys, 2.5, axis=0), np.nanpercentile(ys, 97.5, axis=0)
            ax.fill_between(grid, low, high, color=f"C{i}", alpha=0.2)
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    return _save(fig, ax, out / "curves.png")


def plot_final(table: list[dict], metric: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table if "iqm" in r]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.5 * max(len(rows), 1)))
    for i, r in enumerate(rows):
        low, high = r["iqm_ci"]
        ax.errorbar(r["iqm"], i, xerr=[[r["iqm"] - low], [high - r["iqm"]]], fmt="o", color=f"C{i}", capsize=4)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.set_xlabel(f"final {metric} (mean of the last evaluations)\nIQM over seeds, 95% stratified-bootstrap CI")
    return _save(fig, ax, out / "final.png")


def plot_profiles(table: list[dict], metric: str, out: Path) -> Path | None:
    """rliable's performance profiles: for each score tau, the fraction of a group's runs above it (95%
    stratified-bootstrap bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    scores = {r["label"]: np.array(r["finals"])[:, None] for r in table if "finals" in r}
    if not scores:
        return None
    every = np.concatenate([v.ravel() for v in scores.values()])
    taus = np.linspace(every.min(), every.max(), 101) if every.max() > every.min() else np.array([every.min()])
    with seeded_bootstrap(0):
        profiles, cis = rly.create_performance_profile(scores, taus, reps=REPS)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax,
                                         colors=dict(zip(scores, (f"C{i}" for i in range(len(scores))))),
                                         xlabel=f"final {metric} (tau)", ylabel="fraction of runs > tau")
    ax.legend([plt.Line2D([], [], color=f"C{i}") for i in range(len(scores))], list(scores), fontsize=7)
    return _save(fig, ax, out / "profiles.png")


def _save(fig, ax, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shown(path: str) -> str:
    """A path relative to the working directory when it lies under it (reports are committed: no home dirs)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def fmt(x: float | None, ndigits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:,.{ndigits}f}"


def markdown(table: list[dict], runs: list[Run], metric: str, threshold: float | None, sources: list[Path],
             budget: int | None = None, last: int = 3, better: list[dict] | None = None,
             notes: list[str] = ()) -> str:
    at = f" at {budget:,} env steps (every run cut at this budget)" if budget is not None else ""
    stays = (f" Stays: the median share of a run's evaluations after its first at {threshold:g} that stay "
             f"within 5% of it.") if threshold is not None else ""
    where = (', '.join(str(s) for s in sources) if len(sources) <= 3
             else f"{len(sources)} run dirs under {_shown(os.path.commonpath([str(s) for s in sources]))}")
    lines = ["# Comparison report", "", f"Runs from: {where}  ",
             (f"Metric: `{metric}`, final performance per run: the mean of its last {last} evaluations{at}, "
              f"aggregated over seeds with rliable: IQM, mean{' and optimality gap' if threshold is not None else ''} "
              f"with 95% stratified-bootstrap intervals ({REPS} resamples).{stays}"), "",
             "![curves](curves.png)", "", "![final](final.png)", "", "![performance profiles](profiles.png)", ""]
    head = ["group", "runs (completed)", "IQM [95% CI]", "mean [95% CI]", "median wall s", "median steps"]
    if threshold is not None:
        head += [f"optimality gap to {threshold:g} [95% CI]", f"reached {threshold:g}", "median steps to it", "stays"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [f"`{r['label']}`", f"{r['runs']} ({r['completed']})"]
        if "iqm" in r:
            cells += [f"{fmt(r['iqm'])} [{fmt(r['iqm_ci'][0])}, {fmt(r['iqm_ci'][1])}]",
                      f"{fmt(r['mean'])} [{fmt(r['mean_ci'][0])}, {fmt(r['mean_ci'][1])}]",
                      fmt(r["wall_median"]), fmt(r["steps_median"], 0)]
            if threshold is not None:
                cells += [f"{fmt(r['gap'])} [{fmt(r['gap_ci'][0])}, {fmt(r['gap_ci'][1])}]",
                          f"{r['reached']}/{r['completed']}", fmt(r["steps_to_threshold_median"], 0),
                          fmt(r["stability_median"], 2)]
        else:
            cells += ["-"] * (len(head) - 2)
        lines.append("| " + " | ".join(cells) + " |")
    for note in notes:
        lines += ["", note.strip()]
    if better:
        lines += ["", "## Probability of improvement", "",
                  ("P(X > Y): the chance that a run of X ends above a run of Y (ties count half), with its 95% "
                   "stratified-bootstrap interval; 0.5 is no difference."), "",
                  "| X | Y | P(X > Y) [95% CI] |", "|---|---|---|"]
        lines += [f"| `{b['x']}` | `{b['y']}` | {fmt(b['p'], 2)} [{fmt(b['ci'][0], 2)}, {fmt(b['ci'][1], 2)}] |"
                  for b in better]
    unfinished = [(r.label, r.path, r.status) for r in runs if r.status != "completed"]
    lines += ["", "## Runs not in the aggregates", ""]
    lines += [f"- `{label}` {path}: **{status}**" for label, path, status in unfinished] or ["- none"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wm.report", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", type=Path, help="multirun dirs or run dirs")
    p.add_argument("--out", type=Path, required=True, help="where report.md and the PNGs go")
    p.add_argument("--metric", default="eval/return_mean")
    p.add_argument("--threshold", type=float, default=None, help="report env steps to reach this value")
    p.add_argument("--last", type=int, default=3, help="a run's final performance: the mean of its last N evals")
    p.add_argument("--budget", type=int, default=None,
                   help="compare at this many env steps: longer runs are cut there (equal budgets)")
    p.add_argument("--pairs", nargs="+", default=None, metavar="X:Y",
                   help="groups to compare by probability of improvement, as 'label X:label Y' "
                        "(default: every pair when there are at most 6 groups)")
    p.add_argument("--notes", nargs="+", type=Path, default=[], metavar="MD",
                   help="markdown files placed under the table (how the runs were made, what they show)")
    args = p.parse_args(argv)
    missing = [str(x) for x in [*args.paths, *args.notes] if not x.exists()]
    if missing:
        print(f"error: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = find_runs(args.paths, args.budget)
    if not runs:
        print(f"error: no run dirs (with metrics.jsonl) under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    table = aggregate(runs, args.metric, args.threshold, args.last)
    labels = [r["label"] for r in sorted((r for r in table if "finals" in r), key=lambda r: -r["iqm"])]
    if args.pairs is None:  # every pair, the higher IQM first
        pairs = [(x, y) for i, x in enumerate(labels) for y in labels[i + 1:]] if len(labels) <= 6 else []
    else:
        pairs = [tuple(p.split(":", 1)) for p in args.pairs]
        bad = [p for p in args.pairs if ":" not in p or any(x not in labels for x in p.split(":", 1))]
        if bad:
            print(f"error: --pairs {' '.join(bad)}: each is 'X:Y' with X and Y among the groups: "
                  f"{', '.join(labels)}", file=sys.stderr)
            return 2
    better = improvement({r["label"]: np.array(r["finals"]) for r in table if "finals" in r}, pairs)
    plot_curves(runs, args.metric, args.out, args.threshold)
    plot_final(table, args.metric, args.out)
    plot_profiles(table, args.metric, args.out)
    (args.out / "report.md").write_text(markdown(table, runs, args.metric, args.threshold, args.paths, args.budget,
                                                 args.last, better, [n.read_text() for n in args.notes]))
    (args.out / "report.json").write_text(json.dumps({"groups": table, "improvement": better}, indent=2,
                                                     default=str) + "\n")
    print(f"wrote {args.out / 'report.md'} ({len(runs)} runs in {len(table)} groups)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
