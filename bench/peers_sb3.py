"""wm against Stable-Baselines3 with the same hyperparameters (issues 22, 24): DQN on CartPole-v1 (rl-baselines3-zoo's
settings) and SAC on InvertedPendulum-v5 (wm's `experiment=sac_inverted_pendulum` settings).

    python -m bench.peers_sb3 [--algo dqn|sac] [--seeds 0 1 2 3 4]
        -> bench/results/peers_sb3_dqn_cartpole.json / peers_sb3_sac_inverted_pendulum.json (+ .png)

SB3 lives in its own venv (outputs/venvs/sb3, made once by this benchmark; torch is the same CPU build as the
project's), never in the project's install. For each seed, one after another in one process (alternating, so the
machine state is the same for all), every wm arm and then SB3:
- dqn: wm's `experiment=dqn_cartpole` (the zoo's settings with double DQN, 3-step returns and lr 1e-3 decayed
  linearly to 0), the preset before issue 24's fix (1-step, lr 2.3e-3 decayed), wm at exactly the zoo's settings
  (vanilla DQN, 1-step, constant lr 2.3e-3: the arm whose throughput is compared), and SB3's DQN with the zoo's
  settings; 50k env steps, 20 deterministic evaluation episodes every 2,500;
- sac: wm's `experiment=sac_inverted_pendulum` and SB3's SAC with the same nets, learning rates, batch, tau,
  initial temperature, target entropy, prefill and one update per env step; 5k env steps, 5 episodes every 250.
The final return is the mean of the last 3 evaluations. Throughput is process CPU seconds per 1,000 env steps of
training (so the load of other jobs hardly enters it), evaluation and start-up excluded: SB3's run times its
evaluations and takes them out, and its clock starts at `learn`; wm's is a second run of the timed arm per seed that
evaluates only once, at the end (a few CPU-seconds at most, left in), less a one-step run (start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from bench.causal_pc import peer_python
from bench.common import ROOT, RUNS, iqm_interval, plot_curves, spread, train_seed, write_results
from wm import report

SB3_PACKAGES = ["stable-baselines3==2.9.2", "torch==2.13.0", "gymnasium[mujoco]==1.4.0", "mujoco==3.17.0"]
RUN_SB3 = ROOT / "bench" / "peers" / "run_sb3.py"


@dataclass
class Pair:
    env_id: str
    preset: str
    steps: int
    eval_every: int
    episodes: int
    threshold: float
    sb3: dict  # SB3 keyword arguments (net_arch goes into policy_kwargs)
    arms: dict[str, list[str]] = field(default_factory=dict)  # wm arms: label -> overrides of the preset
    results: str = ""
    runs: str = ""  # run-dir prefix
    timed: str = ""  # the arm whose training CPU is measured against SB3's (identical settings); "": the first


# Overrides that turn wm's DQN preset into the zoo's exact settings (SB3's algorithm and hyperparameters): the
# like-for-like arm, whose throughput is compared with SB3's
ZOO_DQN = ["agent.n_step=1", "agent.lr=2.3e-3", "agent.lr_decay_steps=0", "agent.double=false"]
ZOO_DQN_LABEL = "wm DQN at the zoo's settings (vanilla, 1-step, constant lr 2.3e-3)"


PAIRS = {
    # rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1 (exploration_fraction 0.16 of 50k = wm's 8,000 decay steps)
    "dqn": Pair("CartPole-v1", "experiment=dqn_cartpole", 50_000, 2500, 20, 475.0,
                {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
                 "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
                 "exploration_fraction": 0.16, "exploration_final_eps": 0.04, "net_arch": [256, 256]},
                {"wm DQN (preset: double, 3-step, lr 1e-3 decayed)": [],
                 "wm DQN, 1-step at lr 2.3e-3 decayed (the preset before issue 24's fix)": ZOO_DQN[:2],
                 ZOO_DQN_LABEL: ZOO_DQN},
                "peers_sb3_dqn_cartpole", "peers_sb3", timed=ZOO_DQN_LABEL),
    # wm's experiment=sac_inverted_pendulum in SB3's terms (one learning rate serves actor, critic and temperature)
    "sac": Pair("InvertedPendulum-v5", "experiment=sac_inverted_pendulum", 5000, 250, 5, 950.0,
                {"learning_rate": 1e-3, "batch_size": 256, "buffer_size": 1_000_000, "learning_starts": 250,
                 "gamma": 0.99, "tau": 0.02, "ent_coef": "auto_0.1", "target_entropy": -0.05, "train_freq": 1,
                 "gradient_steps": 1, "net_arch": [64, 64]},
                {"wm SAC (preset)": []}, "peers_sb3_sac_inverted_pendulum", "peers_sb3_sac"),
}


def sb3_seed(algo: str, pair: Pair, seed: int) -> dict:
    out_dir = RUNS / f"{pair.runs}_sb3" / f"seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "result.json"
    if not out.exists():
        python = peer_python("sb3", SB3_PACKAGES)
        t0 = time.time()
        proc = subprocess.Popen([str(python), str(RUN_SB3), algo, pair.env_id, str(seed), str(pair.steps),
                                 str(pair.eval_every), str(pair.episodes), str(out), json.dumps(pair.sb3)],
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"SB3 {algo} seed {seed} failed")
        rec = json.loads(out.read_text())
        rec.update(process_cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2), wall_seconds=round(time.time() - t0, 2))
        out.write_text(json.dumps(rec))
    rec = json.loads(out.read_text())
    return {"seed": seed, "curve": rec["curve"], "final": report.final_of([v for _, v in rec["curve"]], 3),
            "train_cpu_per_1k": round(1000 * rec["train_cpu_seconds"] / pair.steps, 3), "cpu_seconds": rec["cpu_seconds"],
            "wall_seconds": rec["wall_seconds"], "versions": rec["versions"]}


def arm_name(overrides: list[str]) -> str:
    """A run-dir name for a wm arm: preset, or its overrides' keys and values (n_step_1_lr_2.3e-3)."""
    return "_".join(f"{k.split('.')[-1]}_{v}" for k, v in (o.split("=", 1) for o in overrides)) or "preset"


def wm_seed(pair: Pair, overrides: list[str], seed: int) -> dict:
    name = f"{pair.runs}_wm_{arm_name(overrides)}"
    evals = [f"eval.every={pair.eval_every}", f"eval.episodes={pair.episodes}", f"eval.envs={pair.episodes}"]
    rec = train_seed(name, [pair.preset, f"total_steps={pair.steps}", *evals, "device.threads=1", *overrides], seed,
                     pair.threshold, reuse=True)
    return {"seed": seed, "curve": rec["curve"], "final": report.final_of([v for _, v in rec["curve"]], 3),
            "cpu_seconds": rec["cpu_seconds"], "wall_seconds": rec["wall_seconds"]}


def wm_train_cpu(pair: Pair, seed: int, overrides: list[str]) -> float:
    """CPU seconds per 1,000 env steps of training: the arm evaluated only at the end, less a run of the same
    command for one env step (start-up: imports, config, env checks; about 5 CPU-s), which SB3's figure leaves out."""
    def cpu(name: str, steps: int, episodes: int) -> float:
        return train_seed(name, [pair.preset, f"total_steps={steps}", f"eval.every={steps}", f"eval.episodes={episodes}",
                                 f"eval.envs={episodes}", "device.threads=1", *overrides], seed, None,
                          reuse=True)["cpu_seconds"]

    full = cpu(f"{pair.runs}_wm_timing_{arm_name(overrides)}", pair.steps, pair.episodes)
    return round(1000 * (full - cpu(f"{pair.runs}_wm_startup", 1, 1)) / pair.steps, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=list(PAIRS), default="dqn")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = p.parse_args()
    pair = PAIRS[args.algo]
    timed, sb3 = pair.timed or next(iter(pair.arms)), f"SB3 {args.algo.upper()}"
    groups: dict[str, list[dict]] = {label: [] for label in [*pair.arms, sb3]}
    for seed in args.seeds:  # alternating: every arm of a seed before the next seed
        for label, overrides in pair.arms.items():
            groups[label].append(wm_seed(pair, overrides, seed))
        groups[timed][-1]["train_cpu_per_1k"] = wm_train_cpu(pair, seed, pair.arms[timed])
        groups[sb3].append(sb3_seed(args.algo, pair, seed))
        print(seed, {k: v[-1]["final"] for k, v in groups.items()}, flush=True)
    summary = {label: {"final": spread([r["final"] for r in rs]), "final_iqm": iqm_interval([r["final"] for r in rs]),
                       f"seeds_final_at_{pair.threshold:g}": sum(r["final"] >= pair.threshold for r in rs),
                       "train_cpu_per_1k_steps": spread([r.get("train_cpu_per_1k") for r in rs]),
                       "wall_seconds": spread([r["wall_seconds"] for r in rs])} for label, rs in groups.items()}
    ratio = summary[sb3]["train_cpu_per_1k_steps"]["median"] / summary[timed]["train_cpu_per_1k_steps"]["median"]
    plot_curves(pair.results, groups, pair.threshold)
    path = write_results(pair.results, {
        "command": f"python -m bench.peers_sb3 --algo {args.algo} --seeds {' '.join(map(str, args.seeds))}",
        "budget": {"env_steps": pair.steps, "eval": f"{pair.episodes} deterministic episodes every "
                   f"{pair.eval_every} env steps", "threads": 1},
        "wm_preset": pair.preset, "sb3_hyperparameters": pair.sb3, "sb3_packages": SB3_PACKAGES,
        "timed_arm": timed, "sb3_over_wm_train_cpu_per_step": round(ratio, 3), "summary": summary, "seeds": groups})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
