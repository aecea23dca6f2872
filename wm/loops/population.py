"""The evolution loop's real-env stepping: a CMA-ES population's episodes, batched, locally or as Ray tasks.

A population of P candidates is evaluated as one batch: P x R episodes step together (one env each, held in a
gymnasium vector env), and V (``model.encode``), every candidate's controller (``agent.actions``) and M
(``model.rnn.step``, advancing h) run as single batched torch calls per step. With ``agent.ray.enabled`` the
episodes are split into Ray tasks (local Ray, or the cluster at ``agent.ray.address``), each rebuilding V, M
and C on a CPU worker and evaluating its share as a batch.

In the real env z is sampled from V (``z = mu + sigma * eps``, as the paper; ``agent.sample_z=false`` uses mu),
eps from a generator seeded by the episode's seed (``episode_seed(seed, Z_NOISE)``), so a batch of episodes
equals the same episodes one at a time, and the global torch RNG is not touched.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from wm.agents.cmaes import CMAES
from wm.core.seeds import Z_NOISE, episode_seed
from wm.envs.factory import EnvConfig, make_env
from wm.models.vae_rnn import VAERNN


class PopulationEnvs:
    """One env per episode in a vector env, kept between calls while the batch size stays the same."""

    def __init__(self, env_cfg: EnvConfig):
        self.env_cfg = env_cfg
        self.vec: SyncVectorEnv | None = None

    def get(self, n: int) -> SyncVectorEnv:
        if self.vec is None or self.vec.num_envs != n:
            self.close()
            self.vec = SyncVectorEnv([lambda: make_env(self.env_cfg) for _ in range(n)],
                                     autoreset_mode=AutoresetMode.DISABLED)
        return self.vec

    def close(self) -> None:
        if self.vec is not None:
            self.vec.close()
            self.vec = None

    @torch.no_grad()
    def evaluate(self, model: VAERNN, agent: CMAES, params: np.ndarray, seeds: list[int],
                 budget: int | None = None, frames: list | None = None) -> tuple[np.ndarray, int]:
        """Episode returns of controllers ``params`` (E, D), one episode each from reset seed ``seeds[e]``, all
        stepping together: V encodes, the agent maps (z, h) to actions, M advances h. Stops every episode once ``budget`` env steps are spent. Returns (returns (E,), steps).
        ``frames``: if a list, env 0's observations are appended to it (for videos)."""
        device, E = model.device, len(seeds)
        vec = self.get(E)
        obs, _ = vec.reset(seed=list(seeds))
        obs = np.array(obs)
        p = torch.as_tensor(np.asarray(params), dtype=torch.float32, device=device)
        state = model.rnn.initial_state(E, device)
        gens = [torch.Generator().manual_seed(episode_seed(s, Z_NOISE)) for s in seeds] if agent.cfg.sample_z else None
        returns, active, steps = np.zeros(E), np.ones(E, bool), 0
        while active.any() and (budget is None or steps < budget):
            if frames is not None and active[0]:
                frames.append(obs[0].copy())
            noise = None if gens is None else torch.stack(
                [torch.randn(model.cfg.latent, generator=g) for g in gens]).to(device)
            z = model.encode(obs, noise)
            act, a_enc = agent.actions(p, agent.features(z, state[0][0]))
            idx = np.flatnonzero(active)
            if budget is not None:
                idx = idx[: budget - steps]
            for i in idx:  # step only the envs whose episode is still running
                o, r, term, trunc, _ = vec.envs[i].step(act[i])
                obs[i], returns[i] = o, returns[i] + float(r)
                if term or trunc:
                    active[i] = False
            steps += len(idx)
            _, state = model.rnn.step(z, a_enc, state)
        return returns, steps


# ---- the same evaluation as Ray tasks -------------------------------------------------------------------------
def evaluate_ray(model: VAERNN, agent: CMAES, env_cfg: EnvConfig, params: np.ndarray, seeds: list[int],
                 budget: int | None) -> tuple[np.ndarray, int]:
    """``PopulationEnvs.evaluate`` split into ``agent.ray.tasks`` Ray tasks (each with an equal share of the
    budget)."""
    import ray

    rc = agent.cfg.ray
    if not ray.is_initialized():
        kw = {"address": rc.address} if rc.address else {"num_cpus": rc.num_cpus}
        ray.init(include_dashboard=False, log_to_driver=False, **kw)
    blob = ray.put(portable(model, agent))
    chunks = np.array_split(np.arange(len(seeds)), min(rc.tasks, len(seeds)))
    share = None if budget is None else budget // len(chunks)
    task = ray.remote(num_cpus=1)(_evaluate_task)
    refs = [task.remote(blob, env_cfg, np.asarray(params)[c], [seeds[i] for i in c], share) for c in chunks]
    out = ray.get(refs)
    return np.concatenate([r for r, _ in out]), sum(s for _, s in out)


def portable(model: VAERNN, agent: CMAES) -> dict:
    """What a remote worker needs to rebuild V + M and the agent on the CPU (no dataset): the configs and
    spaces (Ray moves them as it moves the task itself) and the weights as a torch file."""
    buf = io.BytesIO()
    torch.save({"vae": model.vae.state_dict(), "rnn": model.rnn.state_dict()}, buf)
    return {"model_cfg": model.cfg, "agent_cfg": agent.cfg, "obs_space": model.obs_space,
            "act_space": model.act_space, "weights": buf.getvalue()}


def rebuild(d: dict) -> tuple[VAERNN, CMAES]:
    """The model and agent of ``portable``, on the CPU; weights load with weights_only=True."""
    cpu = torch.device("cpu")
    weights = torch.load(io.BytesIO(d["weights"]), map_location=cpu, weights_only=True)
    model = VAERNN(d["model_cfg"], d["obs_space"], d["act_space"], cpu)
    model.vae.load_state_dict(weights["vae"])
    model.rnn.load_state_dict(weights["rnn"])
    return model, CMAES(d["agent_cfg"], d["obs_space"], d["act_space"], model, cpu)


def _evaluate_task(blob: dict, env_cfg: EnvConfig, params: np.ndarray, seeds: list[int], budget: int | None):
    torch.set_num_threads(1)
    envs = PopulationEnvs(env_cfg)
    try:
        return envs.evaluate(*rebuild(blob), params, seeds, budget)
    finally:
        envs.close()
