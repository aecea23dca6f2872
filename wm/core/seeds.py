"""Seed streams: every random draw of a run comes from ``episode_seed(run seed, STREAM, ...)`` with a stream
number named here, so two uses never share a stream by accident. The numbers are part of what a seed means:
changing one changes every run that uses it."""

from __future__ import annotations

import numpy as np

TRAIN = 0        # training envs' resets (online loop): (seed, TRAIN, env, episode)
EVAL = 1         # evaluation envs' resets (online and evolution loops): (seed, EVAL, episode)
EVAL_RNG = 2     # an evaluation's own global RNGs (online, supervised loops): (seed, EVAL_RNG, step)
ROLLOUTS = 7     # World Models' random-policy rollout episodes: (seed, ROLLOUTS, episode)
CONTROLLER = 11  # CMA-ES candidates' episodes: (seed, CONTROLLER, generation, rollout)
REEVAL = 12      # re-evaluation of the best candidate: (seed, REEVAL, generation, rollout)
DREAM = 13       # training in the dream: (seed, DREAM[, generation])
Z_NOISE = 14     # the eps in z = mu + sigma * eps, per episode seed: (episode seed, Z_NOISE)
DATASET = 15     # episodes of a policy rolled out into an offline dataset: (seed, DATASET, episode)
STAGE = 100      # + the stage's index: torch's seed at the start of each World Models stage

# minibatch orders: np.random.default_rng([seed, stream, step]) (World Models' V and M, the offline agents)
VAE_STREAM, RNN_STREAM, OFFLINE_STREAM = 1, 2, 31
CHEMISTRY_STREAM = 41  # model=causal / dense_dynamics batches: ([data seed, CHEMISTRY_STREAM, step])
NOISE_STREAM = 42      # model=diffusion: a step's windows and noise, episode_seed(run seed, NOISE_STREAM, step)
NBODY_STREAM = 43      # n-body models' batches: ([data seed, NBODY_STREAM, step])
CSWM_STREAM = 44       # model=cswm's transitions and negatives: ([data seed, CSWM_STREAM, step])
WINDOW_STREAM = 45     # data=physics_frames' ConvLSTM windows: ([seed, WINDOW_STREAM, step])
NBODY_DATA = 0xB0D7    # data=nbody's trajectories: ([seed, NBODY_DATA, split index, trajectory])
BALLS_DATA = 0xBA11    # data=physics_frames system=balls: ([seed, BALLS_DATA, split index, episode])
MISSING_STREAM = 46    # env.miss_ratio: an episode's modality gaps, ([episode seed, MISSING_STREAM])


def episode_seed(*key: int) -> int:
    """A 31-bit seed derived from a tuple such as (run seed, stream, env index, episode index)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0] & 0x7FFFFFFF)
