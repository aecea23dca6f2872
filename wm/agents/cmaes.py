"""The World Models controller: a linear map from [z, h] (or z only) to actions, optimised by CMA-ES (``cma``).

The agent is C and its optimiser: ask / tell and the CMA-ES state (saved as plain values), the map from V's z
and M's h to actions (``features``, ``actions``), and evaluation in the dream (``evaluate_dream``: the
population steps inside M through ``VAERNN.initial_latents`` / ``dream_step``, temperature tau, done head,
costing no real env steps). It creates and steps no env: the evolution loop evaluates candidates in the real
env (wm/loops/population.py, batched, optionally as Ray tasks configured by ``agent.ray``) and picks their
episode seeds.

Controller: ``a = W [z, h] + b``. On CarRacing's (steer, gas, brake) box the paper's mapping: steer ``tanh(a0)``,
gas ``(tanh(a1) + 1) / 2``, brake ``clip(tanh(a2), 0, 1)`` (zero parameters: straight, half gas, no brake). Any
other box: ``low + (tanh(a) + 1) / 2 * (high - low)`` per dimension; discrete actions ``argmax(a)``.
``agent.sample_z`` says whether C sees z sampled from V (the paper) or V's mean in the real env.
"""

from __future__ import annotations

import importlib.util
import types
from dataclasses import dataclass, field
from typing import Optional

import cma
import cma.boundary_handler
import cma.evolution_strategy
import cma.logger
import cma.optimization_tools
import cma.options_parameters
import cma.recombination_weights
import cma.sampler
import cma.sigma_adaptation
import cma.transformations
import cma.utilities.utils
import gymnasium as gym
import numpy as np
import torch

from wm.agents.base import Agent
from wm.config import param, require
from wm.data.rollouts import action_size
from wm.errors import ConfigError

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
    sample_z: bool = True          # C sees z = mu + sigma * eps as in the paper; false: z = mu


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

    # ---- CMA-ES -------------------------------------------------------------------------------------------
    def start(self, seed: int) -> None:
        self.es = cma.CMAEvolutionStrategy(np.zeros(self.dim), self.cfg.sigma0,
                                           {"popsize": self.cfg.population, "seed": seed + 1, "verbose": -9})

    def ask(self) -> np.ndarray:
        return np.asarray(self.es.ask())

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> None:
        self.es.tell(list(candidates), list(-np.asarray(fitness, float)))  # cma minimises

    def es_state(self) -> dict:
        """The CMA-ES object as plain values (loads with torch.load(weights_only=True)); see ``es_to_tree``."""
        return es_to_tree(self.es)

    def load_es_state(self, tree: dict) -> None:
        """Rebuild the CMA-ES object saved by ``es_state``; anything outside the allow-list raises ConfigError.
        Its strings must be among those of a fresh CMA-ES of this config (cma evaluates option strings)."""
        fresh = cma.CMAEvolutionStrategy(np.zeros(self.dim), self.cfg.sigma0,
                                         {"popsize": self.cfg.population, "seed": 1, "verbose": -9})
        self.es = es_from_tree(tree, strings_in(es_to_tree(fresh)))

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
        t = torch.tanh(out)
        if is_carracing_box(self.act_space):  # the paper's mapping: steer, gas, brake
            a = torch.stack([t[:, 0], (t[:, 1] + 1) / 2, t[:, 2].clamp(0, 1)], -1)
        else:
            low = torch.as_tensor(self.act_space.low, device=out.device)
            high = torch.as_tensor(self.act_space.high, device=out.device)
            a = low + (t + 1) / 2 * (high - low)
        return a.cpu().numpy().astype(self.act_space.dtype), a

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


def is_carracing_box(space: gym.Space) -> bool:
    """CarRacing's (steer, gas, brake) box, which the paper's controller maps dimension by dimension."""
    return (isinstance(space, gym.spaces.Box) and space.shape == (3,) and np.array_equal(space.low, [-1, 0, 0])
            and np.array_equal(space.high, [1, 1, 1]))


# ---- the CMA-ES object as plain values ------------------------------------------------------------------------
# A checkpoint must load with torch.load(weights_only=True), and opening a shared run dir must not run its code,
# so the cma.CMAEvolutionStrategy is not pickled: its object graph is written as nested dicts of plain values
# (numbers, strings, bytes of arrays) naming each object's class, and rebuilt from an allow-list by creating
# the object without calling any of its code (cls.__new__, then its __dict__ / items), shared objects shared
# again. The whole state is kept, so a resumed run continues exactly. cma's one RNG is numpy's global
# RandomState (the sampler holds its bound randn): it is restored as that global with the saved state.
_ES_CLASSES = {f"{c.__module__}.{c.__qualname__}": c for c in (
    cma.evolution_strategy.CMAEvolutionStrategy, cma.evolution_strategy._CMASolutionDict_functional,
    cma.evolution_strategy._CMASolutionDict_empty, cma.evolution_strategy._CMAStopDict,
    cma.evolution_strategy._StopTolXStagnation, cma.options_parameters.CMAOptions,
    cma.options_parameters.CMAParameters, cma.boundary_handler.BoundNone, cma.boundary_handler.BoundTransform,
    cma.logger.CMADataLogger, cma.optimization_tools.BestSolution, cma.recombination_weights.RecombinationWeights,
    cma.sampler.GaussFullSampler, cma.sigma_adaptation.CMAAdaptSigmaCSA, cma.sigma_adaptation.CMAAdaptSigmaTPA,
    cma.sigma_adaptation._TPAParameters, cma.transformations.DiagonalDecoding, cma.transformations.GenoPheno,
    cma.transformations.RoundIntegerVariables, cma.utilities.utils.BlancClass, cma.utilities.utils.ElapsedWCTime,
    cma.utilities.utils.MoreToWrite, cma.utilities.utils.SolutionDict, cma.utilities.utils.DictFromTagsInString)}
_ES_FUNCTIONS = {"numpy.linalg.eigh": np.linalg.eigh, "cma._pass": cma.evolution_strategy._pass,
                 "cma.is_feasible": cma.options_parameters.is_feasible}
_RNG_METHODS = ("randn", "rand", "standard_normal", "normal", "uniform")
_GLOBAL_RNG = np.random.mtrand._rand


def es_to_tree(es: cma.CMAEvolutionStrategy) -> dict:
    memo: dict[int, int] = {}
    keep = []  # holds every visited object, so no id is reused while encoding

    def enc(x):
        if x is None or type(x) in (bool, int, float, str, bytes):
            return x
        if isinstance(x, np.generic):
            return {"$": "np", "dtype": x.dtype.str, "v": x.item()}
        if type(x) is range:
            return {"$": "range", "v": [x.start, x.stop, x.step]}
        for name, fn in _ES_FUNCTIONS.items():
            if x is fn:
                return {"$": "fn", "name": name}
        if id(x) in memo:
            return {"$": "ref", "id": memo[id(x)]}
        memo[id(x)] = n = len(memo)
        keep.append(x)
        if type(x) is np.ndarray and x.dtype != object:
            # the memory order is kept: BLAS kernels (AVX-512 ones among them) round differently for C and
            # Fortran layouts, so a reloaded ES would otherwise drift from the one saved by an ulp per generation
            fortran = x.ndim > 1 and x.flags.f_contiguous and not x.flags.c_contiguous
            return {"$": "array", "id": n, "dtype": x.dtype.str, "shape": list(x.shape), "fortran": fortran,
                    "data": (np.asfortranarray(x) if fortran else np.ascontiguousarray(x)).tobytes(order="A")}
        if type(x) in (list, tuple):
            return {"$": type(x).__name__, "id": n, "v": [enc(v) for v in x]}
        if type(x) is np.random.RandomState:
            return {"$": "rng", "id": n, "global": x is _GLOBAL_RNG, "state": enc(x.get_state(legacy=True))}
        if type(x) is types.MethodType and type(x.__self__) is np.random.RandomState and x.__name__ in _RNG_METHODS:
            return {"$": "method", "id": n, "self": enc(x.__self__), "name": x.__name__}
        if type(x) is type and f"{x.__module__}.{x.__qualname__}" in _ES_CLASSES:
            return {"$": "class", "id": n, "name": f"{x.__module__}.{x.__qualname__}"}
        name = f"{type(x).__module__}.{type(x).__qualname__}"
        if type(x) is dict or name in _ES_CLASSES:
            return {"$": "object", "id": n, "cls": None if type(x) is dict else name,
                    "items": [[enc(k), enc(v)] for k, v in x.items()] if isinstance(x, dict) else [],
                    "values": [enc(v) for v in x] if isinstance(x, list) else [],
                    "attrs": {k: enc(v) for k, v in getattr(x, "__dict__", {}).items()}}
        raise TypeError(f"CMA-ES state: cannot store {type(x)} (add it to the allow-list in wm/agents/cmaes.py)")

    return enc(es)


def es_from_tree(tree: dict, strings: set[str]) -> cma.CMAEvolutionStrategy:
    """The inverse of ``es_to_tree``. Refuses (ConfigError) any class, function or method outside the allow-list
    and any string value that is not in ``strings`` (cma evaluates some option values given as strings)."""
    memo: dict[int, object] = {}

    def refuse(what: str):
        raise ConfigError(f"CMA-ES state: {what} is not allowed")

    def key(k):  # names are not evaluated: any string may be a key
        return k if type(k) is str else dec(k)

    def new(node, obj):
        memo[node["id"]] = obj
        return obj

    def dec(x):
        if x is None or type(x) in (bool, int, float, bytes):
            return x
        if type(x) is str:
            return x if x in strings else refuse(f"string {x[:40]!r}")
        if type(x) is not dict:
            refuse(f"value of type {type(x).__name__}")
        kind = x.get("$")
        if kind == "np":
            return np.dtype(x["dtype"]).type(x["v"])
        if kind == "range":
            return range(*x["v"])
        if kind == "fn":
            return _ES_FUNCTIONS[x["name"]] if x["name"] in _ES_FUNCTIONS else refuse(f"function {x['name']!r}")
        if kind == "ref":
            return memo[x["id"]]
        if kind == "array":
            dtype = np.dtype(x["dtype"])
            if dtype.hasobject:
                refuse("an object array")
            order = "F" if x.get("fortran") is True else "C"
            return new(x, np.frombuffer(x["data"], dtype).reshape(x["shape"], order=order).copy(order=order))
        if kind == "list":
            out = new(x, [])
            out.extend(dec(v) for v in x["v"])
            return out
        if kind == "tuple":
            return new(x, tuple(dec(v) for v in x["v"]))
        if kind == "rng":
            rng = new(x, _GLOBAL_RNG if x["global"] else np.random.RandomState())
            rng.set_state(dec(x["state"]))
            return rng
        if kind == "method":
            rng = dec(x["self"])
            if type(rng) is not np.random.RandomState or x["name"] not in _RNG_METHODS:
                refuse(f"method {x['name']!r}")
            return new(x, getattr(rng, x["name"]))
        if kind == "class":
            return new(x, _ES_CLASSES[x["name"]] if x["name"] in _ES_CLASSES else refuse(f"class {x['name']!r}"))
        if kind == "object":
            cls = dict if x["cls"] is None else _ES_CLASSES.get(x["cls"]) or refuse(f"class {x['cls']!r}")
            obj = new(x, cls.__new__(cls))  # no __init__, no __setstate__: none of its code runs
            if isinstance(obj, dict):
                dict.update(obj, [(key(k), dec(v)) for k, v in x["items"]])
            if isinstance(obj, list):
                list.extend(obj, [dec(v) for v in x["values"]])
            if x["attrs"]:
                vars(obj).update({str(k): dec(v) for k, v in x["attrs"].items()})
            return obj
        refuse(f"node {kind!r}")

    try:
        es = dec(tree)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # a malformed tree: one line
        raise ConfigError(f"CMA-ES state: malformed ({type(e).__name__}: {e})") from None
    if type(es) is not cma.CMAEvolutionStrategy:
        refuse(f"a top-level {type(es).__name__}")
    return es


def strings_in(tree) -> set[str]:
    """Every string value in a tree of plain values."""
    if type(tree) is str:
        return {tree}
    if type(tree) is dict:
        return set().union(*(strings_in(v) for v in tree.values()))
    if type(tree) in (list, tuple):
        return set().union(*(strings_in(v) for v in tree))
    return set()
