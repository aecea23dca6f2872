"""wm's Dreamer against SheepRL's DreamerV3 at the same size on CartPole-v1 (issue 22).

    python -m bench.peers_sheeprl [--seeds 0 1 2] [--steps 10000]
        -> bench/results/peers_sheeprl_dreamer_cartpole.json (+ .png)
           (another --steps than 10000 writes peers_sheeprl_dreamer_cartpole_<steps>steps.json instead)

SheepRL (0.8.4, PyPI) lives in its own venv, outputs/venvs/sheeprl, made once by this benchmark with the same torch
2.13.0 CPU build as the project's and gymnasium 1.4.0; it is never installed into the project's venv. For each seed,
one after the other (alternating, so both see the same machine state):
- wm: `python train.py experiment=dreamer_cartpole seed=S total_steps=N eval.every=1000 device.threads=1` (through
  bench.common.train_seed; a completed run dir of the same command is reused), run dir
  outputs/bench/peers_sheeprl_wm_<N>/seedS;
- SheepRL: its own CLI entry point (`sheeprl exp=dreamer_v3 env=gym env.id=CartPole-v1 ...`, the overrides in
  SIZES and SETTINGS below) run by bench/peers/run_sheeprl.py, which adds wm's evaluation to it (the CLI only plays
  one sampled episode at the end); logs, checkpoints and its result under outputs/bench/peers_sheeprl_sheeprl_<N>/
  seedS (a result of the same overrides is reused).
Both: CPU, one torch thread, 4 CartPole-v1 envs stepped in one process, N env steps (summed over the envs), 500
uniform random steps first, 10 greedy episodes every 1,000 env steps and at the end (a batch of 10 envs).

Per run: the eval curve, process CPU seconds (os.wait4 of the child: start-up, training, evaluations), wall seconds
and env steps per wall second of the whole process, and the updates (one world-model + actor + critic step each).
Both make the same number of updates on batches of the same shape and run the same evaluations, so CPU-s per 1,000
env steps (and updates per CPU-second) is the cost of each implementation at these settings; it is not a cost at
equal FLOPs: SheepRL's updates imagine from twice as many start states and have 255-bin reward and critic heads
(DEPARTURES). SheepRL's run also splits its CPU into start-up, evaluation and update time; wm's record has only the
total (its start-up is about 5 CPU-s). Score: the mean of the last 3 evaluations (wm.report.final_of); median,
min-max and IQM with its 95% interval over seeds.
Every value set on SheepRL is read from wm's composed preset (SIZES); where SheepRL has no knob for one of wm's
settings, its own DreamerV3 default stays (DEPARTURES), and the preset values those notes assume are checked
(ASSUMED).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import yaml

from bench.causal_pc import peer_python
from bench.common import LOCK, ROOT, RUNS, iqm_interval, save_figure, spread, train_seed, write_results
from wm import report
from wm.core.schedule import Schedule

# torch pinned: unpinned, pip would fetch a multi-GB CUDA build; 2.13.0 is the project's CPU wheel
PACKAGES = ["sheeprl==0.8.4", "torch==2.13.0", "gymnasium==1.4.0"]
RUN_SHEEPRL = ROOT / "bench" / "peers" / "run_sheeprl.py"
PRESET = "experiment=dreamer_cartpole"
EVAL_EVERY, EPISODES, THRESHOLD, DEFAULT_STEPS = 1000, 10, 475.0, 10_000
NAME = "peers_sheeprl_dreamer_cartpole"


def wm_config() -> dict:
    """wm's composed config of the preset (`python train.py experiment=dreamer_cartpole --cfg job`)."""
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), PRESET, "--cfg", "job"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(out)


def same(*values):
    """The one value several wm keys share where SheepRL has one key for them (refused if they differ)."""
    if len(set(values)) != 1:
        raise ValueError(f"SheepRL has one key for wm's values {values}: they must be equal to map")
    return values[0]


# (wm key, SheepRL key, the value from wm's composed config `c`): every value set on SheepRL is read from wm's preset
SIZES: list[tuple[str, str, Callable[[dict], object]]] = [
    ("model.deter", "algo.world_model.recurrent_model.recurrent_state_size", lambda c: c["model"]["deter"]),
    ("model.hidden (GRU input layer)", "algo.world_model.recurrent_model.dense_units", lambda c: c["model"]["hidden"]),
    ("model.hidden (prior MLP)", "algo.world_model.transition_model.hidden_size", lambda c: c["model"]["hidden"]),
    ("model.hidden (posterior MLP)", "algo.world_model.representation_model.hidden_size",
     lambda c: c["model"]["hidden"]),
    ("model.groups", "algo.world_model.stochastic_size", lambda c: c["model"]["groups"]),
    ("model.classes", "algo.world_model.discrete_size", lambda c: c["model"]["classes"]),
    # one SheepRL key sets the width and depth of the encoder, decoder, reward, continue, actor and critic MLPs;
    # wm has model.units/layers and agent.units/layers, equal in the preset
    ("model.units = agent.units", "algo.dense_units", lambda c: same(c["model"]["units"], c["agent"]["units"])),
    ("model.layers = agent.layers", "algo.mlp_layers", lambda c: same(c["model"]["layers"], c["agent"]["layers"])),
    ("model.batch", "algo.per_rank_batch_size", lambda c: c["model"]["batch"]),
    ("model.length", "algo.per_rank_sequence_length", lambda c: c["model"]["length"]),
    ("agent.horizon", "algo.horizon", lambda c: c["agent"]["horizon"]),
    # wm: `updates` updates every `every` env steps (summed over the envs); SheepRL: gradient steps per policy step
    # (env steps summed over the envs): 1/8, i.e. DreamerV3's train ratio 16 x 32 / 8 = 64 replayed steps per step
    ("model.update.updates / model.update.every", "algo.replay_ratio",
     lambda c: c["model"]["update"]["updates"] / c["model"]["update"]["every"]),
    # both play this many uniform random steps, then train; SheepRL's ratio counts from there, so both make 1,188
    # updates in 10k steps
    ("agent.prefill = model.update.start", "algo.learning_starts",
     lambda c: same(c["agent"]["prefill"], c["model"]["update"]["start"])),
    ("env.num_envs", "env.num_envs", lambda c: c["env"]["num_envs"]),
    ("replay.capacity", "buffer.size", lambda c: c["replay"]["capacity"]),
    ("model.lr", "algo.world_model.optimizer.lr", lambda c: c["model"]["lr"]),
    ("model.eps", "algo.world_model.optimizer.eps", lambda c: c["model"]["eps"]),
    ("agent.actor_lr", "algo.actor.optimizer.lr", lambda c: c["agent"]["actor_lr"]),
    ("agent.critic_lr", "algo.critic.optimizer.lr", lambda c: c["agent"]["critic_lr"]),
    ("agent.eps (actor)", "algo.actor.optimizer.eps", lambda c: c["agent"]["eps"]),
    ("agent.eps (critic)", "algo.critic.optimizer.eps", lambda c: c["agent"]["eps"]),
    ("model.grad_clip", "algo.world_model.clip_gradients", lambda c: c["model"]["grad_clip"]),
    ("agent.grad_clip (actor)", "algo.actor.clip_gradients", lambda c: c["agent"]["grad_clip"]),
    ("agent.grad_clip (critic)", "algo.critic.clip_gradients", lambda c: c["agent"]["grad_clip"]),
    ("agent.gamma", "algo.gamma", lambda c: c["agent"]["gamma"]),  # SheepRL's default: 0.997
    ("agent.lam", "algo.lmbda", lambda c: c["agent"]["lam"]),
    ("agent.entropy", "algo.actor.ent_coef", lambda c: c["agent"]["entropy"]),
    ("model.unimix = agent.unimix", "algo.unimix", lambda c: same(c["model"]["unimix"], c["agent"]["unimix"])),
    ("model.dyn_scale", "algo.world_model.kl_dynamic", lambda c: c["model"]["dyn_scale"]),
    ("model.rep_scale", "algo.world_model.kl_representation", lambda c: c["model"]["rep_scale"]),
    ("model.free_bits", "algo.world_model.kl_free_nats", lambda c: c["model"]["free_bits"]),
    # wm's slow critic: an EMA per update; SheepRL's target critic: tau per update (per_rank_target_network_update_freq
    # is 1 by default)
    ("1 - agent.slow_decay", "algo.critic.tau", lambda c: round(1 - c["agent"]["slow_decay"], 6)),
    # return normalisation by max(1, P95 - P5) of the lambda-returns (EMA): the same percentiles and max in both
    ("agent.norm_decay", "algo.actor.moments.decay", lambda c: c["agent"]["norm_decay"]),
    # wm.core.nets.mlp's nn.LayerNorm keeps PyTorch's eps; SheepRL's DreamerV3 default is 1e-3
    ("LayerNorm eps (PyTorch's default in wm)", "algo.mlp_layer_norm.kw.eps", lambda c: 1e-5),
    ("checkpoint.every", "checkpoint.every", lambda c: c["checkpoint"]["every"]),
    ("device.threads=1 (the wm command)", "num_threads", lambda c: 1),
    ("device (CPU)", "fabric.accelerator", lambda c: "cpu"),
]

# wm's settings the mapping and DEPARTURES assume (SheepRL's DreamerV3 does these, or the departure says otherwise):
# refused if the preset changes them
ASSUMED = {"model.latent": "categorical", "model.symlog_obs": True, "model.kl_balance": True,
           "model.obs_scale": 1.0, "model.reward_scale": 1.0, "model.cont_scale": 1.0, "agent.actor_grad": "auto",
           "agent.return_norm": True, "agent.slow_target": False, "agent.replay_value": 0.0,
           "agent.critic_head": "symlog_mse", "model.reward_head": "symlog_mse", "agent.slow_reg": 0.1,
           "model.terminal_weight": 5.0, "agent.starts": 256, "env.id": "CartPole-v1", "env.action_repeat": 1}


def mapped(c: dict) -> list[tuple[str, str, object]]:
    """The size mapping with wm's values, after checking the settings it assumes."""
    for path, want in ASSUMED.items():
        group, key = path.split(".")
        if c[group][key] != want:
            raise ValueError(f"the SheepRL mapping assumes wm's {path}={want!r}, the preset has {c[group][key]!r}")
    return [(ours, theirs, get(c)) for ours, theirs, get in SIZES]


# SheepRL settings without a wm size behind them: the env, how it runs and what it writes
SETTINGS = [
    "exp=dreamer_v3", "env=gym", "env.id=CartPole-v1",
    # CartPole's vector observation, encoded and decoded (exp=dreamer_v3 sets an image key for both)
    "algo.cnn_keys.encoder=[]", "algo.cnn_keys.decoder=[]", "algo.mlp_keys.encoder=[state]",
    "algo.mlp_keys.decoder=[state]",
    # wm's initial GRU state is zeros: SheepRL's learnable one (DreamerV3) off, it is then tanh(0) = 0
    "algo.world_model.learnable_initial_recurrent_state=False",
    "algo.run_test=False",  # its one sampled test episode: replaced by run_sheeprl.py's evaluations
    "env.sync_env=True",  # the envs in the learner's process, as wm's (the async default forks one per env)
    "env.capture_video=False", "buffer.memmap=False",  # wm keeps no videos and its replay in memory
    "buffer.checkpoint=True", "checkpoint.keep_last=1",  # the replay in the checkpoint, as wm's
    "metric.log_every=1000", "fabric.devices=1", "algo.compile.enabled=False",
]

# wm settings that SheepRL's DreamerV3 has no knob for (its default stays), and other differences
DEPARTURES = [
    ("reward and critic heads: wm symlog-MSE (model.reward_head=symlog_mse, agent.critic_head=symlog_mse); "
     "SheepRL two-hot over 255 symlog bins (algo.world_model.reward_model.bins, algo.critic.bins: no MSE head)"),
    ("critic regulariser towards the slow critic: wm weight agent.slow_reg=0.1; SheepRL weight 1 (fixed in its "
     "critic loss, DreamerV3's)"),
    ("continue loss: wm weights terminal rows 5x (model.terminal_weight=5); SheepRL has no per-row weight "
     "(algo.world_model.continue_scale_factor scales every row; left at 1)"),
    ("imagination starts: wm 256 of the 16 x 32 = 512 posteriors per update (agent.starts=256); SheepRL all 512 "
     "(no knob): twice wm's imagined rollouts per update, so SheepRL's updates do more actor/critic work"),
    "GRU: wm torch.nn.GRUCell; SheepRL DreamerV3's LayerNorm GRU cell (algo.world_model.recurrent_model.layer_norm)",
    ("initialisation: wm PyTorch defaults with zeroed reward and critic output layers; SheepRL DreamerV3's "
     "(truncated normal, scaled uniform heads, zeroed reward and critic outputs: algo.hafner_initialization=True)"),
    "initial stochastic state at episode starts: wm zeros; SheepRL the prior's mode at the zero GRU state",
    ("evaluation episodes: the same count, batch and greedy actions, other reset seeds (wm its own eval seeds, "
     "SheepRL 10,000 + k); SheepRL's eval envs are stepped one by one in a loop, wm's as a vector env"),
]


def sheeprl_overrides(sizes: list[tuple[str, str, object]], seed: int, steps: int, out_dir) -> list[str]:
    return [*SETTINGS, *(f"{key}={value}" for _, key, value in sizes),
            f"algo.total_steps={steps}", f"seed={seed}", f"run_name=seed{seed}", f"log_root={out_dir / 'logs'}",
            f"hydra.run.dir={out_dir / 'hydra'}"]


def sheeprl_seed(sizes: list[tuple[str, str, object]], seed: int, steps: int) -> dict:
    out_dir = RUNS / f"peers_sheeprl_sheeprl_{steps}" / f"seed{seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    out, record = out_dir / "result.json", out_dir / "record.json"
    overrides = sheeprl_overrides(sizes, seed, steps, out_dir)
    if out.exists() and record.exists() and json.loads(out.read_text())["overrides"] == overrides:
        print(f"SheepRL seed {seed}: reused {out_dir}", flush=True)
    else:
        python = peer_python("sheeprl", PACKAGES)
        shutil.rmtree(out_dir)  # what an earlier run of other overrides (or a failed one) left
        out_dir.mkdir(parents=True)
        log = out_dir / "run.log"
        with open(LOCK, "w") as held, open(log, "w") as logf:
            if os.environ.get("WM_BENCH_LOCK", "1") != "0":  # never two timed runs at once (bench.common)
                fcntl.flock(held, fcntl.LOCK_EX)
            load, t0 = round(os.getloadavg()[0], 2), time.time()
            proc = subprocess.Popen([str(python), str(RUN_SHEEPRL), str(EVAL_EVERY), str(EPISODES), str(out),
                                     *overrides], cwd=out_dir, stdout=logf, stderr=subprocess.STDOUT,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"})
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.time() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"SheepRL seed {seed} failed (log {log}):\n{log.read_text()[-3000:]}")
        record.write_text(json.dumps({"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
                                      "wall_seconds": round(wall, 2), "loadavg_1min_at_start": load,
                                      "loadavg_at_end": round(os.getloadavg()[0], 2)}) + "\n")
    rec, timing = json.loads(out.read_text()), json.loads(record.read_text())
    return {"seed": seed, "curve": rec["curve"], "final": report.final_of([v for _, v in rec["curve"]], 3),
            "last_eval": rec["curve"][-1][1], "updates": rec["updates"], **timing,
            "env_steps_per_second": round(rec["env_steps"] / timing["wall_seconds"], 2),
            "cpu_per_1k_steps": round(1000 * timing["cpu_seconds"] / rec["env_steps"], 2),
            "updates_per_cpu_second": round(rec["updates"] / timing["cpu_seconds"], 3),
            "cpu_split": {k: rec[k] for k in ("startup_cpu_seconds", "train_cpu_seconds", "eval_cpu_seconds",
                                              "update_cpu_seconds")},
            "episodes": rec["episodes"], "versions": rec["versions"], "torch_threads": rec["torch_threads"]}


def wm_seed(c: dict, seed: int, steps: int) -> dict:
    rec = train_seed(f"peers_sheeprl_wm_{steps}", [PRESET, f"total_steps={steps}", f"eval.every={EVAL_EVERY}",
                                                   "device.threads=1"], seed, THRESHOLD, reuse=True)
    updates = Schedule(**c["model"]["update"]).rounds(steps)  # the loop's update rounds (1,188 at 10k steps)
    return {"seed": seed, "curve": rec["curve"], "final": report.final_of([v for _, v in rec["curve"]], 3),
            "last_eval": rec["final"], "updates": updates, "cpu_seconds": rec["cpu_seconds"],
            "wall_seconds": rec["wall_seconds"], "loadavg_1min_at_start": rec.get("loadavg_1min_at_start"),
            "loadavg_at_end": rec.get("loadavg_at_end"),
            "env_steps_per_second": round(steps / rec["wall_seconds"], 2),
            "cpu_per_1k_steps": round(1000 * rec["cpu_seconds"] / steps, 2),
            "updates_per_cpu_second": round(updates / rec["cpu_seconds"], 3), "reused": rec["reused_run_dir"]}


def plot(name: str, groups: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    for i, (label, seeds) in enumerate(groups.items()):
        for j, rec in enumerate(seeds):
            xs, ys = zip(*rec["curve"])
            ax.plot(xs, ys, color=f"C{i}", alpha=0.8, lw=1.2, marker=".", label=label if j == 0 else None)
        cpu = [r["cpu_per_1k_steps"] for r in seeds]
        bx.bar(i, statistics.median(cpu), color=f"C{i}", alpha=0.7)
        bx.plot([i] * len(cpu), cpu, "k.", ms=6)
    ax.axhline(THRESHOLD, color="gray", ls="--", lw=1)
    ax.set(xlabel="env steps", ylabel=f"eval return ({EPISODES} greedy episodes)", title="CartPole-v1")
    ax.legend()
    ax.grid(alpha=0.3)
    bx.set_xticks(range(len(groups)), [label.split(" (")[0] for label in groups])
    bx.set(ylabel="process CPU-s per 1,000 env steps", title="cost (median bar, seeds as dots)")
    bx.grid(alpha=0.3, axis="y")
    save_figure(fig, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="env steps per run (summed over the 4 envs)")
    args = p.parse_args()
    if args.steps % 4 or args.steps < EVAL_EVERY:
        p.error(f"--steps must be a multiple of 4 (the envs) and at least {EVAL_EVERY}")
    c = wm_config()
    sizes = mapped(c)
    name = NAME if args.steps == DEFAULT_STEPS else f"{NAME}_{args.steps}steps"
    wm_label, sheep_label = "wm Dreamer (experiment=dreamer_cartpole)", "SheepRL DreamerV3 (same sizes)"
    groups: dict[str, list[dict]] = {wm_label: [], sheep_label: []}
    for seed in args.seeds:  # alternating: both of a seed before the next seed
        groups[wm_label].append(wm_seed(c, seed, args.steps))
        groups[sheep_label].append(sheeprl_seed(sizes, seed, args.steps))
        print(seed, {k: (v[-1]["final"], v[-1]["cpu_seconds"]) for k, v in groups.items()}, flush=True)
    summary = {label: {"final": spread([r["final"] for r in rs]), "final_iqm": iqm_interval([r["final"] for r in rs]),
                       f"seeds_final_at_{THRESHOLD:g}": sum(r["final"] >= THRESHOLD for r in rs),
                       "cpu_per_1k_steps": spread([r["cpu_per_1k_steps"] for r in rs]),
                       "env_steps_per_second": spread([r["env_steps_per_second"] for r in rs]),
                       "updates_per_cpu_second": spread([r["updates_per_cpu_second"] for r in rs]),
                       "cpu_seconds": spread([r["cpu_seconds"] for r in rs]),
                       "wall_seconds": spread([r["wall_seconds"] for r in rs]),
                       "updates": spread([r["updates"] for r in rs])} for label, rs in groups.items()}
    ratio = summary[sheep_label]["cpu_per_1k_steps"]["median"] / summary[wm_label]["cpu_per_1k_steps"]["median"]
    plot(name, groups)
    path = write_results(name, {
        "command": f"python -m bench.peers_sheeprl --seeds {' '.join(map(str, args.seeds))} --steps {args.steps}",
        "budget": {"env_steps": args.steps, "eval": f"{EPISODES} greedy episodes every {EVAL_EVERY} env steps and "
                   "at the end", "threads": 1, "envs": 4},
        "wm_command": f"python train.py {PRESET} seed=S total_steps={args.steps} eval.every={EVAL_EVERY} "
                      "device.threads=1",
        "sheeprl_packages": PACKAGES,
        "size_mapping": [{"wm": ours, "sheeprl": theirs, "value": value} for ours, theirs, value in sizes],
        "wm_settings_assumed": ASSUMED,
        "sheeprl_settings": SETTINGS, "departures": DEPARTURES,
        "score": "mean of the last 3 evaluations (wm.report.final_of); median (min-max) and IQM [95% CI] over seeds",
        "throughput": "whole child process (os.wait4): start-up, training and evaluations; the same work per env "
                      "step on both sides except SheepRL's twice as many imagination starts (departures)",
        "sheeprl_over_wm_cpu_per_step": round(ratio, 3), "summary": summary, "seeds": groups})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
