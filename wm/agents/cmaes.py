"""The World Models controller: a linear map from [z, h] (or z only) to actions, optimised by CMA-ES (``cma``).

A population of P candidates is evaluated as one batch: P x R episodes step together (one env each, held in a
gymnasium vector env), and V (encode), every candidate's controller and M (advance h) run as single batched
torch calls per step. In the dream, the same batch steps inside M instead (``VAERNN.dream_step``, temperature
tau, done head), costing no real env steps. With ``ray.enabled`` the candidates are split into Ray tasks
(local Ray, or the cluster at ``ray.address``), each evaluating its share as a batch.

Controller: ``a = W [z, h] + b``; continuous actions are ``low + (tanh(a) + 1) / 2 * (high - low)`` per
dimension (steering in [-1, 1], gas and brake in [0, 1] on CarRacing), discrete actions ``argmax(a)``.
Episodes of candidate c, rollout r in generation g start from reset seed ``episode_seed(seed, CONTROLLER, g, r)``:
all candidates of a generation meet the same R tracks, and a resumed run repeats them exactly.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from dataclasses import dataclass, field
from typing import Optional

import cma
import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from wm.agents.base import Agent
from wm.config import param, require
from wm.data.rollouts import action_size
from wm.envs.factory import EnvConfig, make_env

INPUTS = ("zh", "z")


@dataclass
class RayConfig:
    enabled: bool = False
    # None: start a local Ray; "auto" or "ray://host:10001": join a cluster
    address: Optional[str] = param(None, free="a Ray address, checked by ray.init")
    tasks: int = param(2, gt=0)    # Ray tasks per generation (each evaluates a share of the population)
    num_cpus: Optional[int] = param(None, gt=0)  # local Ray only

    def check(self) -> None:
        if self.enabled:
            require(importlib.util.find_spec("ray") is not None, "enabled",
                    'ray is not installed; pip install -e ".[launchers]" or set agent.ray.enabled=false')


@dataclass
class CMAESConfig:
    inputs: str = param("zh", choices=INPUTS)  # controller input: zh = [z, h] (the paper's full model), z only
    population: int = param(64, ge=2)  # the paper: 64
    rollouts: int = param(16, gt=0)  # episodes per candidate (the paper: 16), their mean is the fitness
    generations: int = param(1800, gt=0)  # the paper: 1,800 (the env-step budget usually ends training first)
    sigma0: float = param(0.1, gt=0)
    reeval_every: int = param(25, gt=0)  # re-evaluate each generation's best on more episodes this often
    reeval_rollouts: int = param(1024, gt=0)  # the paper: 1,024
    dream: bool = False            # train inside M; real env steps only for the re-evaluations
    dream_horizon: int = param(1000, gt=0)  # max imagined steps per dream episode
    temperature: Optional[float] = param(None, gt=0)  # tau for dreams (None: model.rnn.temperature)
    ray: RayConfig = field(default_factory=RayConfig)


class CMAES(Agent):
    Config = CMAESConfig
    action_kinds = ("continuous", "discrete")
    requires_model = ("vae_rnn",)
    loop = "evolution"  # trained by wm/loops/evolution.py, not the online loop

    def __init__(self, cfg: CMAESConfig, obs_space: gym.Space, act_space: gym.Space, model, device: torch.device):
        super().__init__()
        self.cfg, self.act_space, self.model, self.device = cfg, act_space, model, device
        self.in_dim = model.cfg.latent + (model.cfg.rnn.hidden if cfg.inputs == "zh" else 0)
        self.out_dim = action_size(act_space)
        self.dim = self.out_dim * self.in_dim + self.out_dim
        self.es: cma.CMAEvolutionStrategy | None = None
        self._vec: SyncVectorEnv | None = None

    # ---- CMA-ES -------------------------------------------------------------------------------------------
    def start(self, seed: int) -> None:
        self.es = cma.CMAEvolutionStrategy(np.zeros(self.dim), self.cfg.sigma0,
                                           {"popsize": self.cfg.population, "seed": seed + 1, "verbose": -9})

    def ask(self) -> np.ndarray:
        return np.asarray(self.es.ask())

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> None:
        self.es.tell(list(candidates), list(-np.asarray(fitness, float)))  # cma minimises

    def es_state(self) -> bytes:
        return pickle.dumps(self.es)

    def load_es_state(self, blob: bytes) -> None:
        self.es = pickle.loads(blob)

    # ---- the controller -----------------------------------------------------------------------------------
    def features(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, h], -1) if self.cfg.inputs == "zh" else z

    def actions(self, params: torch.Tensor, feats: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """params (E, D) (each env's candidate), feats (E, in) -> env actions (E, ...) and their encoding
        (E, A) as M sees it (one-hot for discrete)."""
        W = params[:, : self.out_dim * self.in_dim].reshape(-1, self.out_dim, self.in_dim)
        out = torch.einsum("eai,ei->ea", W, feats) + params[:, self.out_dim * self.in_dim:]
        if isinstance(self.act_space, gym.spaces.Discrete):
            idx = out.argmax(-1)
            return (idx + int(self.act_space.start)).cpu().numpy(), torch.nn.functional.one_hot(
                idx, self.out_dim).float()
        low = torch.as_tensor(self.act_space.low, device=out.device)
        high = torch.as_tensor(self.act_space.high, device=out.device)
        a = low + (torch.tanh(out) + 1) / 2 * (high - low)
        return a.cpu().numpy().astype(self.act_space.dtype), a

    # ---- evaluation in the real env -----------------------------------------------------------------------
    def _envs(self, env_cfg: EnvConfig, n: int) -> SyncVectorEnv:
        if self._vec is None or self._vec.num_envs != n:
            if self._vec is not None:
                self._vec.close()
            self._vec = SyncVectorEnv([lambda: make_env(env_cfg) for _ in range(n)],
                                      autoreset_mode=AutoresetMode.DISABLED)
        return self._vec

    @torch.no_grad()
    def evaluate_real(self, env_cfg: EnvConfig, params: np.ndarray, seeds: list[int], budget: int | None = None,
                      frames: list | None = None) -> tuple[np.ndarray, int]:
        """Episode returns of controllers ``params`` (E, D), one episode each from reset seed ``seeds[e]``, all
        stepping together. Stops every episode once ``budget`` env steps are spent. Returns (returns (E,), steps).
        ``frames``: if a list, env 0's observations are appended to it (for videos)."""
        E = len(seeds)
        vec = self._envs(env_cfg, E)
        obs, _ = vec.reset(seed=list(seeds))
        obs = np.array(obs)
        p = torch.as_tensor(np.asarray(params), dtype=torch.float32, device=self.device)
        state = self.model.rnn.initial_state(E, self.device)
        returns, active, steps = np.zeros(E), np.ones(E, bool), 0
        while active.any() and (budget is None or steps < budget):
            if frames is not None and active[0]:
                frames.append(obs[0].copy())
            z = self.model.encode(obs)
            act, a_enc = self.actions(p, self.features(z, state[0][0]))
            idx = np.flatnonzero(active)
            if budget is not None:
                idx = idx[: budget - steps]
            for i in idx:  # step only the envs whose episode is still running
                o, r, term, trunc, _ = vec.envs[i].step(act[i])
                obs[i], returns[i] = o, returns[i] + float(r)
                if term or trunc:
                    active[i] = False
            steps += len(idx)
            _, state = self.model.rnn.step(z, a_enc, state)
        return returns, steps

    # ---- evaluation in the dream ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_dream(self, params: np.ndarray, seed: int, tau: float | None = None,
                       latents: list | None = None) -> tuple[np.ndarray, int]:
        """Returns of controllers ``params`` (E, D), one imagined episode each inside M, batched; starts from
        z of stored first frames. Returns (returns (E,), dream steps). ``latents``: collects z of episode 0."""
        tau = self.cfg.temperature or self.model.cfg.rnn.temperature
        gen = torch.Generator(device=self.device).manual_seed(seed)
        rng = np.random.default_rng(seed)
        E = len(params)
        p = torch.as_tensor(np.asarray(params), dtype=torch.float32, device=self.device)
        z = self.model.initial_latents(E, rng)
        state = self.model.rnn.initial_state(E, self.device)
        h = state[0][0]
        returns = torch.zeros(E, device=self.device)
        alive = torch.ones(E, dtype=torch.bool, device=self.device)
        steps = 0
        for _ in range(self.cfg.dream_horizon):
            if latents is not None and alive[0]:
                latents.append(z[:1].clone())
            _, a_enc = self.actions(p, self.features(z, h))
            z, reward, done, state, h = self.model.dream_step(z, a_enc, state, tau, gen)
            returns += reward * alive
            steps += int(alive.sum())
            alive &= ~done
            if not alive.any():
                break
        return returns.cpu().numpy(), steps

    # ---- evaluation as Ray tasks ------------------------------------------------------------------------------
    def evaluate_ray(self, env_cfg: EnvConfig, params: np.ndarray, seeds: list[int],
                     budget: int | None) -> tuple[np.ndarray, int]:
        """``evaluate_real`` split into ``ray.tasks`` Ray tasks (each with an equal share of the budget)."""
        import ray

        if not ray.is_initialized():
            kw = {"address": self.cfg.ray.address} if self.cfg.ray.address else {"num_cpus": self.cfg.ray.num_cpus}
            ray.init(include_dashboard=False, log_to_driver=False, **kw)
        blob = ray.put(self.portable())
        chunks = np.array_split(np.arange(len(seeds)), min(self.cfg.ray.tasks, len(seeds)))
        share = None if budget is None else budget // len(chunks)
        task = ray.remote(num_cpus=1)(_evaluate_task)
        refs = [task.remote(blob, env_cfg, np.asarray(params)[c], [seeds[i] for i in c], share)
                for c in chunks]
        out = ray.get(refs)
        return np.concatenate([r for r, _ in out]), sum(s for _, s in out)

    def portable(self) -> bytes:
        """What a remote worker needs to rebuild this agent and its V + M on the CPU (no dataset)."""
        m = self.model
        buf = io.BytesIO()
        torch.save({"model_cfg": m.cfg, "agent_cfg": self.cfg, "obs_space": m.obs_space, "act_space": m.act_space,
                    "vae": m.vae.state_dict(), "rnn": m.rnn.state_dict()}, buf)
        return buf.getvalue()


def rebuild(blob: bytes) -> CMAES:
    from wm.models.vae_rnn import VAERNN

    d = torch.load(io.BytesIO(blob), weights_only=False)
    cpu = torch.device("cpu")
    model = VAERNN(d["model_cfg"], d["obs_space"], d["act_space"], cpu)
    model.vae.load_state_dict(d["vae"])
    model.rnn.load_state_dict(d["rnn"])
    return CMAES(d["agent_cfg"], d["obs_space"], d["act_space"], model, cpu)


def _evaluate_task(blob: bytes, env_cfg: EnvConfig, params: np.ndarray, seeds: list[int], budget: int | None):
    torch.set_num_threads(1)
    return rebuild(blob).evaluate_real(env_cfg, params, seeds, budget)
