"""Train SheepRL's DreamerV3 and evaluate it the way wm evaluates; executed by bench/peers_sheeprl.py inside the
peer venv (outputs/venvs/sheeprl), never the project's. Imports only SheepRL and its dependencies.

Usage: run_sheeprl.py EVAL_EVERY EVAL_EPISODES OUT.json OVERRIDE [OVERRIDE ...]

The OVERRIDEs are SheepRL's own Hydra overrides (those of its CLI, `sheeprl exp=dreamer_v3 env=gym ...`), and the run
is SheepRL's CLI entry point itself (`sheeprl.cli.run`), unchanged, with three observers patched into the module of
its DreamerV3 (sheeprl.algos.dreamer_v3.dreamer_v3), because the CLI evaluates only once, at the end, with one
sampled (not greedy) episode:
- `build_agent` is wrapped to keep the player (the acting copy of the encoder, RSSM and actor, weights shared with
  the learner) and the Fabric and config, and to apply `num_threads` with torch.set_num_threads (as wm's
  device.threads; SheepRL itself only sets OMP_NUM_THREADS, after torch is loaded);
- the vector env is wrapped so that, once EVAL_EVERY env steps (summed over the envs, SheepRL's policy steps) are
  done, the next env step first runs an evaluation (after the training of the iteration that reached them, as wm
  evaluates after its updates of that step), and `close()` (after the last iteration) runs the final one;
- `train` (one world-model + actor + critic update) is wrapped to count the updates and their process CPU time.
An evaluation plays EVAL_EPISODES greedy episodes at once (a batch, as wm's eval.envs), on envs made by SheepRL's own
`make_env` (the same wrappers as training), reset with seeds 10_000 + k (the same at every evaluation), with a player
of its own (its recurrent states apart from the training player's) and on a forked torch RNG, so that evaluating
does not change training. OUT gets the curve [[env steps, mean return]], every episode's return, process CPU time
(start-up, evaluations, updates, total) and versions.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import sheeprl
import sheeprl.algos.dreamer_v3.dreamer_v3 as dv3
import torch
from sheeprl.algos.dreamer_v3.agent import PlayerDV3
from sheeprl.algos.dreamer_v3.utils import prepare_obs
from sheeprl.cli import run as sheeprl_cli
from sheeprl.utils.env import make_env

T0 = time.time()
# CPU times are time.process_time(): this process's, from its start (imports included)
STATE: dict = {"curve": [], "episodes": [], "eval_cpu": 0.0, "update_cpu": 0.0, "updates": 0, "steps": 0,
               "cpu_at_build": None, "cpu_at_close": None, "eval_cpu_at_close": None}


def evaluate(step: int, episodes: int) -> None:
    fabric, cfg, player = STATE["fabric"], STATE["cfg"], STATE["player"]
    c = time.process_time()
    envs = [make_env(cfg, 10_000 + k, 0, None, "eval")() for k in range(episodes)]
    if not all(type(e.action_space).__name__ == "Discrete" for e in envs):
        raise NotImplementedError("this runner evaluates discrete-action envs only (CartPole)")
    obs = [e.reset(seed=10_000 + k)[0] for k, e in enumerate(envs)]
    keys = list(obs[0])
    ev = PlayerDV3(player.encoder, player.rssm, player.actor, player.actions_dim, episodes, player.stochastic_size,
                   player.recurrent_state_size, player.device, discrete_size=player.discrete_size)
    running, returns = np.ones(episodes, bool), np.zeros(episodes)
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(STATE["seed"] * 1000 + step)
        ev.init_states()
        while running.any():
            batch = {k: np.stack([o[k] for o in obs]) for k in keys}
            acts = ev.get_actions(prepare_obs(fabric, batch, cnn_keys=cfg.algo.cnn_keys.encoder, num_envs=episodes),
                                  greedy=True)
            acts = torch.stack([a.argmax(dim=-1) for a in acts], dim=-1).cpu().numpy().reshape(episodes, -1)
            for i in np.flatnonzero(running):
                o, r, term, trunc, _ = envs[i].step(int(acts[i, 0]))
                obs[i] = o
                returns[i] += float(r)
                running[i] = not (term or trunc)
    for e in envs:
        e.close()
    STATE["curve"].append([step, float(np.mean(returns))])
    STATE["episodes"].append([step, returns.tolist()])
    STATE["eval_cpu"] += time.process_time() - c
    print(f"[run_sheeprl] eval at {step} env steps: mean return {np.mean(returns):.1f}", flush=True)


class EvalEveryVectorEnv:
    """SheepRL's vector env, evaluating the agent every ``every`` env steps and at the end (``close``)."""

    def __init__(self, envs, every: int, episodes: int):
        self._envs, self._every, self._episodes = envs, every, episodes
        self._evals = 0
        self._last_eval = -1

    def __getattr__(self, name):
        return getattr(self._envs, name)

    def step(self, actions):
        if STATE["steps"] // self._every > self._evals:
            evaluate(STATE["steps"], self._episodes)
            self._evals, self._last_eval = STATE["steps"] // self._every, STATE["steps"]
        out = self._envs.step(actions)
        STATE["steps"] += self._envs.num_envs
        return out

    def close(self, **kwargs):
        STATE["cpu_at_close"], STATE["eval_cpu_at_close"] = time.process_time(), STATE["eval_cpu"]
        if self._last_eval != STATE["steps"]:
            evaluate(STATE["steps"], self._episodes)
        return self._envs.close(**kwargs)


def patch(every: int, episodes: int) -> None:
    build_agent, vector_cls, train = dv3.build_agent, dv3.get_vector_env_cls, dv3.train

    def build_agent_kept(fabric, actions_dim, is_continuous, cfg, *args, **kwargs):
        STATE["cpu_at_build"] = time.process_time()
        # SheepRL's `num_threads` only sets OMP_NUM_THREADS once torch is loaded; wm calls torch.set_num_threads
        torch.set_num_threads(int(cfg.num_threads))
        out = build_agent(fabric, actions_dim, is_continuous, cfg, *args, **kwargs)
        STATE.update(fabric=fabric, cfg=cfg, player=out[-1], seed=int(cfg.seed))
        return out

    def vector_cls_evaluating(sync_env: bool):
        cls = vector_cls(sync_env)
        return lambda fns, *a, **k: EvalEveryVectorEnv(cls(fns, *a, **k), every, episodes)

    def train_counted(*args, **kwargs):
        c = time.process_time()
        train(*args, **kwargs)
        STATE["update_cpu"] += time.process_time() - c
        STATE["updates"] += 1

    dv3.build_agent, dv3.get_vector_env_cls, dv3.train = build_agent_kept, vector_cls_evaluating, train_counted


def main(every: int, episodes: int, out: str, overrides: list[str]) -> None:
    patch(every, episodes)
    sys.argv = ["sheeprl", *overrides]
    try:
        sheeprl_cli()  # Hydra's main: returns when the run ends (exits non-zero on a config error)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    if not STATE["curve"]:
        raise RuntimeError("SheepRL's DreamerV3 ran no evaluation: did the run start?")
    cpu = time.process_time()
    # the training loop: from the agent's build to the vector env's close, its evaluations taken out (env steps,
    # acting, replay, updates, SheepRL's logging and checkpoints)
    loop = STATE["cpu_at_close"] - STATE["cpu_at_build"] - STATE["eval_cpu_at_close"]
    with open(out, "w") as f:
        json.dump({"curve": STATE["curve"], "episodes": STATE["episodes"], "env_steps": STATE["steps"],
                   "updates": STATE["updates"], "cpu_seconds": round(cpu, 2),
                   "startup_cpu_seconds": round(STATE["cpu_at_build"], 2),
                   "eval_cpu_seconds": round(STATE["eval_cpu"], 2),
                   "update_cpu_seconds": round(STATE["update_cpu"], 2),
                   "train_cpu_seconds": round(loop, 2),
                   "wall_seconds": round(time.time() - T0, 2), "torch_threads": torch.get_num_threads(),
                   "overrides": overrides,
                   "versions": {"sheeprl": sheeprl.__version__, "torch": torch.__version__,
                                "gymnasium": __import__("gymnasium").__version__,
                                "lightning": __import__("lightning").__version__}}, f)


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]), int(a[1]), a[2], a[3:])
