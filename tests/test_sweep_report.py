"""A joblib multirun of a small named sweep completes, and wm.report turns it into markdown and plots,
listing runs that did not complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, metrics, summary
from wm import report


def test_joblib_sweep_then_report(tmp_path):
    sweep_dir, out = tmp_path / "sweep", tmp_path / "report"
    proc = subprocess.run([sys.executable, "train.py", "sweep=smoke", f"hydra.sweep.dir={sweep_dir}",
                           "progress=false"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 4 and all(summary(j)["status"] == "completed" for j in jobs)

    # a copy of one run that is still going (its summary says so), as the report may meet mid-sweep
    running = sweep_dir / "9_still_running"
    shutil.copytree(jobs[0], running)
    (running / "summary.json").write_text(json.dumps({**summary(jobs[0]), "status": "running"}))

    proc = subprocess.run([sys.executable, "-m", "wm.report", str(sweep_dir), "--out", str(out),
                           "--threshold", "15"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (out / "report.md").read_text()
    assert "| `agent.double=False` | 2 (2) |" in report and "| `agent.double=True` | 3 (2) |" in report
    assert "9_still_running" in report and "**running**" in report
    assert (out / "curves.png").stat().st_size > 5000 and (out / "final.png").stat().st_size > 3000
    table = json.loads((out / "report.json").read_text())["groups"]
    for row in table:  # a run's final performance: the mean of its last 3 evaluations
        finals = [np.mean([m["eval/return_mean"] for m in metrics(j) if "eval/return_mean" in m][-3:])
                  for j in jobs if row["label"] in j.name.replace(",", " ")]
        assert row["mean"] == pytest.approx(sum(finals) / len(finals))


def test_report_rejects_missing_paths(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wm.report", str(tmp_path / "nope"), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no such path")


def fake_run(path, overrides: list[str], evals: list[tuple[int, float]], status: str = "completed"):
    """A run dir as train.py leaves it, with the given eval curve (one eval row per point)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (path / "config.yaml").write_text("seed: 0\n")
    rows = [{"step": s, "time": s / 100, "eval/return_mean": v} for s, v in evals]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "summary.json").write_text(json.dumps({"status": status, "steps": evals[-1][0],
                                                   "wall_seconds": evals[-1][0] / 100,
                                                   "eval/return_mean": evals[-1][1]}))


def test_report_compares_runs_of_different_lengths_at_one_budget(tmp_path):
    """A 50k-step run and a 10k-step run meet at --budget 10000: the long run's value at 10k is its
    final, its later evals are dropped, total_steps leaves the label; a run that stopped short of the
    budget stays out of the aggregates."""
    fake_run(tmp_path / "long", ["experiment=a", "total_steps=50000"], [(5000, 10.0), (10000, 20.0), (50000, 500.0)])
    fake_run(tmp_path / "short", ["experiment=b", "total_steps=10000"], [(5000, 30.0), (10000, 40.0)])
    fake_run(tmp_path / "cut", ["experiment=b", "total_steps=10000"], [(5000, 99.0)], status="interrupted")
    out = tmp_path / "report"
    assert report.main([str(tmp_path / n) for n in ("long", "short", "cut")]
                       + ["--out", str(out), "--budget", "10000", "--threshold", "15", "--last", "1"]) == 0
    table = {r["label"]: r for r in json.loads((out / "report.json").read_text())["groups"]}
    assert set(table) == {"experiment=a", "experiment=b"}
    assert table["experiment=a"]["mean"] == 20.0 and table["experiment=a"]["steps_to_threshold_median"] == 10000
    assert table["experiment=b"]["mean"] == 40.0 and table["experiment=b"]["completed"] == 1
    assert table["experiment=b"]["not_completed"] == {"cut": "interrupted"}
    assert "at 10,000 env steps" in (out / "report.md").read_text()


def test_final_is_the_mean_of_the_last_evals_and_stability_counts_the_evals_that_stay(tmp_path):
    """A run that reaches 500 and falls to 15 has not solved the task: its final performance is the mean of
    its last evaluations, and its stability the share of evaluations after the first 500 that stay >= 475."""
    fake_run(tmp_path / "fall", ["experiment=a"], [(1000, 500.0), (2000, 480.0), (3000, 15.0), (4000, 25.0)])
    fake_run(tmp_path / "hold", ["experiment=b"], [(1000, 100.0), (2000, 500.0), (3000, 500.0), (4000, 490.0)])
    out = tmp_path / "report"
    assert report.main([str(tmp_path), "--out", str(out), "--threshold", "500"]) == 0
    table = {r["label"]: r for r in json.loads((out / "report.json").read_text())["groups"]}
    assert table["experiment=a"]["mean"] == pytest.approx((480 + 15 + 25) / 3)
    assert table["experiment=a"]["stability_median"] == pytest.approx(1 / 3)  # 480 stays, 15 and 25 do not
    assert table["experiment=b"]["mean"] == pytest.approx((500 + 500 + 490) / 3)
    assert table["experiment=b"]["stability_median"] == 1.0  # 500 and 490 both within 5% of 500
    assert report.stability([10.0, 20.0], 500.0) is None and report.final_of([], 3) is None
    assert "mean of its last 3 evaluations" in (out / "report.md").read_text()


def test_rliable_intervals_profiles_and_probability_of_improvement(tmp_path):
    """Five seeds of a clearly better group against a worse one: rliable's IQM, mean and optimality gap come
    with intervals that hold their point estimates, the better group improves on the worse with probability 1
    (every run above every run), a group compared with itself gets 0.5, and the performance profiles plot."""
    for seed in range(5):
        fake_run(tmp_path / f"good{seed}", ["agent=good"], [(1000, 480.0 + 4 * seed)])
        fake_run(tmp_path / f"bad{seed}", ["agent=bad"], [(1000, 100.0 + 50 * seed)])
    out = tmp_path / "report"
    assert report.main([str(tmp_path), "--out", str(out), "--threshold", "475", "--last", "1",
                        "--pairs", "agent=good:agent=bad", "agent=bad:agent=bad"]) == 0
    data = json.loads((out / "report.json").read_text())
    groups = {r["label"]: r for r in data["groups"]}
    good, bad = groups["agent=good"], groups["agent=bad"]
    assert good["iqm"] == pytest.approx(488.0) and bad["mean"] == pytest.approx(200.0)
    for g in (good, bad):
        for key in ("iqm", "mean", "gap"):
            low, high = g[f"{key}_ci"]
            assert low <= g[key] <= high
    assert good["gap"] == 0.0 and bad["gap"] == pytest.approx(475 - 200.0)  # every bad run falls short
    assert bad["mean_ci"][1] - bad["mean_ci"][0] > 50  # the spread of 100..300 shows in the interval
    p = {b["pair"]: b for b in data["improvement"]}
    assert p["agent=good > agent=bad"]["p"] == 1.0 and p["agent=bad > agent=bad"]["p"] == 0.5
    assert (out / "profiles.png").stat().st_size > 5000
    md = (out / "report.md").read_text()
    assert "stratified-bootstrap" in md and "| `agent=good` | `agent=bad` | 1.00 [1.00, 1.00] |" in md
    assert report.main([str(tmp_path), "--out", str(out), "--pairs", "agent=good:nope"]) == 2


def test_report_intervals_do_not_depend_on_the_global_rng():
    """rliable's bootstraps draw from numpy's global RNG: a report made twice, from any RNG state, prints the same
    intervals, and the caller's RNG state is left as it was."""
    import numpy as np

    scores = {"a": np.array([1.0, 5, 3, 8, 2]), "b": np.array([4.0, 4, 6, 9, 1])}
    made = []
    for seed in (1, 2):
        np.random.seed(seed)
        made.append((report.interval(scores, report.iqm_of), report.improvement(scores, [("a", "b")])))
        assert np.random.rand() == np.random.RandomState(seed).rand()  # the caller's stream goes on untouched
    assert made[0] == made[1]


def test_bench_ablations_runs_a_named_sweep_job_by_job_and_reuses_what_ran(tmp_path, monkeypatch, capsys):
    """bench.ablations: the sweep's grid as single runs (sweep=<name> hydra.mode=RUN), a results file with each
    run's CPU time, the report with its notes and each variant against the baseline; run again, it trains nothing."""
    from bench import ablations, common

    monkeypatch.setenv("WM_BENCH_LOCK", "0")
    for mod, attr, path in ((common, "RUNS", tmp_path / "runs"), (ablations, "RUNS", tmp_path / "runs"),
                            (common, "RESULTS", tmp_path / "results"), (ablations, "REPORTS", tmp_path / "reports")):
        monkeypatch.setattr(mod, attr, path)
    assert ablations.grid("smoke") == ([{"agent.double": "true"}, {"agent.double": "false"}], [0, 1])
    (tmp_path / "reports" / "smoke").mkdir(parents=True)
    (tmp_path / "reports" / "smoke" / "findings.md").write_text("Double Q changes nothing at 600 steps.\n")
    argv = ["smoke", "--seeds", "0", "--baseline", "agent.double=true"]
    ablations.main(argv)
    assert capsys.readouterr().out.count("reused") == 0
    for variant in ("double-true", "double-false"):
        overrides = (tmp_path / "runs" / "smoke" / variant / "seed0" / ".hydra" / "overrides.yaml").read_text()
        assert "sweep=smoke" in overrides and f"agent.double={variant.split('-')[1]}" in overrides
    results = json.loads((tmp_path / "results" / "ablation_smoke.json").read_text())
    assert results["runs"] == 2 and set(results["variants"]) == {"double-true", "double-false"}
    assert all(r["cpu_seconds"] > 0 and r["cpu"] and "cpu_id" in r for v in results["variants"].values() for r in v["seeds"])
    text = (tmp_path / "reports" / "smoke" / "report.md").read_text()
    assert "| `agent.double=false` | 1 (1) |" in text and "Double Q changes nothing" in text
    assert "python -m bench.ablations smoke --seeds 0" in text and "| `agent.double=false` | `agent.double=true` |" in text
    ablations.main(argv)
    assert capsys.readouterr().out.count("reused") == 2
    # a run made before its preset changed (here: its saved config edited) is set aside and run anew, not reused
    saved = tmp_path / "runs" / "smoke" / "double-false" / "seed0" / ".hydra" / "config.yaml"
    saved.write_text(saved.read_text().replace("total_steps: 600", "total_steps: 500"))
    ablations.main(argv)
    out = capsys.readouterr().out
    assert out.count("reused") == 1 and out.count("running anew") == 1
    stale = list((tmp_path / "runs" / "smoke" / "double-false").glob("seed0.stale-*"))
    assert len(stale) == 1 and (stale[0] / "record.json").exists()  # its timing record kept with it
    # outputs/ gone (a new machine): the slim copies kept under bench/results/runs/ stand in for the run dirs
    kept = tmp_path / "results" / "runs" / "smoke" / "double-true" / "seed0"
    assert (kept / "record.json").exists() and (kept / ".hydra" / "overrides.yaml").exists()
    assert all('"eval/' in line for line in (kept / "metrics.jsonl").read_text().splitlines())
    shutil.rmtree(tmp_path / "runs")
    ablations.main(argv)
    assert capsys.readouterr().out.count("reused") == 2
    again = json.loads((tmp_path / "results" / "ablation_smoke.json").read_text())["variants"]["double-true"]["seeds"][0]
    first = results["variants"]["double-true"]["seeds"][0]
    assert again["reused_run_dir"] and (again["final"], again["curve"], again["cpu_seconds"]) == \
        (first["final"], first["curve"], first["cpu_seconds"])
    with pytest.raises(SystemExit, match="agent.double=true, agent.double=false"):
        ablations.main(["smoke", "--baseline", "agent.double=maybe"])


def test_bench_ablations_stops_at_a_failed_run(tmp_path, monkeypatch):
    """A run that fails (or is stopped) ends the study there: the queued runs do not start (they resume with the
    study's next call). --set overrides reach every run."""
    from bench import ablations

    calls = []

    def failing(name, overrides, seed, *args, **kwargs):
        calls.append((name, overrides, seed))
        raise RuntimeError(f"{name} seed {seed} failed")

    monkeypatch.setattr(ablations, "train_seed", failing)
    with pytest.raises(RuntimeError, match="seed 0 failed"):
        ablations.main(["smoke", "--set", "agent.lr=1e-3"])
    assert calls == [("smoke/double-true", ["sweep=smoke", "hydra.mode=RUN", "agent.lr=1e-3", "agent.double=true"], 0)]
    with pytest.raises(SystemExit, match="--set agent.lr: give KEY=VALUE"):
        ablations.main(["smoke", "--set", "agent.lr"])
