"""Causal world models on the chemistry world (issue 21): CDL's CMI masks (model=causal) against the dense model
(model=dense_dynamics) and against PC (causal-learn, in its own venv) on the same transitions.

    python -m bench.causal [--parallel 2] [--objects 5 10] [--graphs chain collider full] [--seeds 0 1 2]
        -> bench/results/causal_chemistry.json, causal_chemistry_<objects>_<graph>.png (true vs learned graphs)
    python -m bench.causal --objects 10 --graphs collider --replan 100
        -> bench/results/causal_chemistry_replan100.json (target matching of the finished runs, 100 episodes)

For every (objects, graph, seed): the world's mechanisms come from graph_seed = seed, and its 10k random-policy
training transitions from the run seed, so the three seeds are three worlds. Each model trains with
``experiment=causal_chemistry`` for 3,000 steps (batch 256) and is evaluated once at the end: next-colour
accuracy on the test, shifted-distractor (std 1 -> 5) and intervened (the last object's mechanism replaced)
splits, the learned graph's SHD / F1, and target matching with CEM over the model's predictions (20 episodes of
``objects`` steps). References on the same episodes: CEM over the true simulator (oracle) and uniformly random
actions. PC: G-square test, alpha 0.01, time tiers with no edge inside a time slice (the lagged graph has none; with them
allowed, PC on 10 objects / full took 666 s and reached SHD 41 instead of 16), on the same 10k training
transitions (distractors cut into 4 quantile bins).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import RESULTS, ROOT, read_run, spread, train_seed, write_results

STEPS = 3000
METRICS = ("eval/accuracy", "eval/accuracy_shift", "eval/shift_drop", "eval/accuracy_intervened", "eval/shd",
           "eval/f1", "eval/edges", "eval/plan_match", "eval/plan_solved")


def world_overrides(objects: int, graph: str, seed: int) -> list[str]:
    return [f"data.world.objects={objects}", f"data.world.graph={graph}", f"data.world.graph_seed={seed}"]


def model_job(model: str, objects: int, graph: str, seed: int) -> dict:
    name = f"causal_chemistry_{model}_{objects}_{graph}"
    over = ["experiment=causal_chemistry", f"model={model}", f"total_steps={STEPS}", f"eval.every={STEPS}",
            "device.threads=1", *world_overrides(objects, graph, seed)]
    rec = train_seed(name, over, seed, None, metric="eval/accuracy", reuse=True, lock=False)
    last = [r for r in read_run(ROOT / "outputs" / "bench" / name / f"seed{seed}")["rows"] if "eval/accuracy" in r][-1]
    return {"model": model, "objects": objects, "graph": graph, "seed": seed,
            **{k.split("/")[1]: last.get(k) for k in METRICS}, "wall_seconds": rec["wall_seconds"],
            "cpu_seconds": rec.get("cpu_seconds")}


def dataset(objects: int, graph: str, seed: int):
    from wm.config import typed
    from wm.data.chemistry import ChemistryTransitions

    cfg = typed(ChemistryTransitions, {"world": {"objects": objects, "graph": graph, "graph_seed": seed}}, "data")
    return ChemistryTransitions(cfg, seed=seed)


def pc_job(objects: int, graph: str, seed: int) -> dict:
    from bench.causal_pc import pc_graph
    from wm.metrics.graphs import edge_f1, shd

    data = dataset(objects, graph, seed)
    tr = data.splits["train"]
    edges = [np.quantile(tr["distractors"][:, k], [0.25, 0.5, 0.75]) for k in range(data.world.d)]

    def bins(x: np.ndarray) -> np.ndarray:
        return np.stack([np.digitize(x[:, k], edges[k]) for k in range(x.shape[1])], 1).reshape(len(x), -1)

    x = np.concatenate([tr["colours"], bins(tr["distractors"]), tr["action"][:, None]], 1)
    y = np.concatenate([tr["next_colours"], bins(tr["next_distractors"])], 1)
    t0 = time.time()
    adj, seconds = pc_graph(x, y, alpha=0.01, instantaneous=False)
    f1 = edge_f1(data.true_graph, adj)
    return {"model": "pc", "objects": objects, "graph": graph, "seed": seed, "shd": shd(data.true_graph, adj),
            "f1": f1["f1"], "edges": int(adj.sum()), "pc_seconds": round(seconds, 2),
            "wall_seconds": round(time.time() - t0, 2), "graph_matrix": adj.astype(int).tolist()}


def reference_job(objects: int, graph: str, seed: int) -> dict:
    """Target matching on the models' evaluation episodes with the true simulator as the model, and random."""
    import torch

    from wm.models.causal import PlanConfig, plan_targets

    data = dataset(objects, graph, seed)
    world, rng = data.world, np.random.default_rng(0)

    def oracle(colours, distractors, actions):
        c, d = world.step(np.asarray(colours), np.asarray(distractors), np.asarray(actions), rng)
        return torch.as_tensor(c), torch.as_tensor(d)

    out = {"model": "oracle", "objects": objects, "graph": graph, "seed": seed}
    out.update({k.split("/")[1]: v for k, v in plan_targets(oracle, data, PlanConfig()).items()})
    random_plan = PlanConfig(iterations=1, candidates=1, top_k=1)  # one uniformly drawn sequence: random actions
    torch.manual_seed(seed)
    out.update({f"random_{k.split('/')[1]}": v for k, v in plan_targets(
        lambda c, d, a: (torch.as_tensor(c), torch.as_tensor(d)), data, random_plan).items()})
    return out


def replan_job(model: str, objects: int, graph: str, seed: int, episodes: int) -> dict:
    """Target matching re-scored from a finished run's checkpoint with ``episodes`` episodes (the run's own
    evaluation has 20, where one object in 200 is half a point): the same model, data and planner settings."""
    import tempfile

    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from wm import checkpoint
    from wm.models.causal import plan_targets
    from wm.validate import CONF_DIR, validate

    run_dir = ROOT / "outputs" / "bench" / f"causal_chemistry_{model}_{objects}_{graph}" / f"seed{seed}"
    saved = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[o for o in saved if not o.startswith(("hydra.", "progress"))])
    plan = validate(cfg, Path(tempfile.mkdtemp()))
    data = plan.data_cls(plan.data, seed=plan.run.seed)
    net = plan.model_cls(plan.model, data=data, device="cpu")
    net.load_state_dict(checkpoint.load(run_dir)["model"])
    torch.manual_seed(0)
    t0 = time.process_time()
    out = plan_targets(net.predict, data, dataclasses.replace(plan.model.plan, episodes=episodes))
    return {"model": model, "objects": objects, "graph": graph, "seed": seed, "episodes": episodes,
            **{k.split("/")[1]: v for k, v in out.items()}, "cpu_seconds": round(time.process_time() - t0, 1)}


def plot(rows: list[dict], objects: list[int], graphs: list[str], seed: int) -> None:
    """True vs learned graphs (CDL's mask from the run's checkpoint, PC's), one figure per world."""
    from wm import checkpoint
    from wm.metrics.graphs import draw_graphs

    for n in objects:
        for g in graphs:
            data = dataset(n, g, seed)
            state = checkpoint.load(ROOT / "outputs" / "bench" / f"causal_chemistry_causal_{n}_{g}" / f"seed{seed}")
            pc = next(r for r in rows if r["model"] == "pc" and (r["objects"], r["graph"], r["seed"]) == (n, g, seed))
            learned = {"CDL (CMI mask)": state["model"]["mask"].numpy(),
                       "PC (causal-learn)": np.array(pc["graph_matrix"], bool)}
            ins, outs = data.world.names()
            draw_graphs(RESULTS / f"causal_chemistry_{n}_{g}.png", data.true_graph, learned, ins, outs,
                        title=f"chemistry, {g} graph, {n} objects, seed {seed}: true lagged graph vs learned")


def table(rows: list[dict], objects: list[int], graphs: list[str]) -> list[dict]:
    out = []
    for n in objects:
        for g in graphs:
            cell = [r for r in rows if r["objects"] == n and r["graph"] == g]
            row = {"objects": n, "graph": g}
            for m, keys in (("causal", ("shd", "f1", "accuracy", "accuracy_shift", "shift_drop",
                                        "accuracy_intervened", "plan_match", "plan_solved", "cpu_seconds")),
                            ("dense_dynamics", ("accuracy", "accuracy_shift", "shift_drop", "accuracy_intervened",
                                                "plan_match", "plan_solved", "cpu_seconds")),
                            ("pc", ("shd", "f1", "pc_seconds")),
                            ("oracle", ("plan_match", "plan_solved", "random_plan_match"))):
                for k in keys:
                    row[f"{m}/{k}"] = spread([r.get(k) for r in cell if r["model"] == m])
            out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, nargs="+", default=[5, 10])
    p.add_argument("--graphs", nargs="+", default=["chain", "collider", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--parallel", type=int, default=1, help="model runs at a time (one torch thread each)")
    p.add_argument("--replan", type=int, default=0, metavar="EPISODES",
                   help="only re-score target matching of the finished runs with this many episodes "
                        "-> results/causal_chemistry_replan<EPISODES>.json")
    args = p.parse_args()
    cells = [(n, g, s) for n in args.objects for g in args.graphs for s in args.seeds]
    if args.replan:
        import torch

        torch.set_num_threads(1)
        rows = [replan_job(m, *c, args.replan) for c in cells for m in ("causal", "dense_dynamics")]
        summary = [{"objects": n, "graph": g, **{f"{m}/{k}": spread([r[k] for r in rows if r["model"] == m and
                                                                      (r["objects"], r["graph"]) == (n, g)])
                                                 for m in ("causal", "dense_dynamics")
                                                 for k in ("plan_match", "plan_solved")}}
                   for n in args.objects for g in args.graphs]
        command = " ".join(["python -m bench.causal --objects", *map(str, args.objects), "--graphs", *args.graphs,
                            "--seeds", *map(str, args.seeds), "--replan", str(args.replan)])
        path = write_results(f"causal_chemistry_replan{args.replan}", {"command": command, "table": summary,
                                                                        "runs": rows})
        print(f"wrote {path}")
        for r in summary:
            print(r)
        return
    t0 = time.time()
    rows = [pc_job(*c) for c in cells] + [reference_job(*c) for c in cells]
    jobs = [(m, *c) for c in cells for m in ("causal", "dense_dynamics")]
    with ThreadPoolExecutor(args.parallel) as pool:
        rows += list(pool.map(lambda j: model_job(*j), jobs))
    plot(rows, args.objects, args.graphs, args.seeds[0])
    summary = table(rows, args.objects, args.graphs)
    path = write_results("causal_chemistry", {
        "command": "python -m bench.causal " + " ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                                                        for k, v in vars(args).items()),
        "budget": f"{STEPS} train steps of batch 256 on 10k random transitions per model run; PC on the same 10k",
        "parallel": args.parallel, "wall_seconds": round(time.time() - t0, 1), "table": summary,
        "runs": [{k: v for k, v in r.items() if k != "graph_matrix"} for r in rows]})
    print(f"wrote {path}")
    for r in summary:
        print(f"{r['objects']:>2} {r['graph']:<9} SHD causal {r['causal/shd']['median']} PC {r['pc/shd']['median']} | "
              f"acc {r['causal/accuracy']['median']:.3f} vs dense {r['dense_dynamics/accuracy']['median']:.3f} | "
              f"shift drop {r['causal/shift_drop']['median']:.3f} vs {r['dense_dynamics/shift_drop']['median']:.3f} | "
              f"plan {r['causal/plan_match']['median']:.2f} vs {r['dense_dynamics/plan_match']['median']:.2f} "
              f"(oracle {r['oracle/plan_match']['median']:.2f})")


if __name__ == "__main__":
    main()
