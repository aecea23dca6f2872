"""Stop a run at the first non-finite loss, gradient or parameter, naming it, before it is checkpointed.

The loops call every learner's ``train_step`` through ``checked_step``: a non-finite loss or gradient norm
in the stats it returns (keys ending in one of GUARDED; other stats may be NaN by design, e.g. coverage where
it is not measured, or the log-likelihood gain of a first EM step) or an error raised inside it because its numbers went non-finite (argument
checks of torch.distributions, multinomial on NaN probabilities) becomes one NonFiniteError; the online
loop's acting goes through ``checked_act`` for the same reason. Any other
error keeps its traceback: it is a bug, not a diverged run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import torch

GUARDED = re.compile(r"(loss|grad_norm|nll|kl|loglik)$")


class NonFiniteError(Exception):
    """A learner's loss, gradient or parameters are no longer finite: the run cannot go on."""


def checked_step(learner: Any, step: int, train_step: Callable[[], dict[str, Any]],
                 learners: Iterable[Any] = ()) -> dict[str, Any]:
    """``train_step()``'s stats, or a NonFiniteError naming the key, the learner and the env/optimizer step.
    ``learners``: the run's other learners, whose parameters may be the ones that went non-finite (an
    agent that imagines through a diverged world model fails first)."""
    who = type(learner).__name__
    suspects = [learner, *(x for x in learners if x is not learner)]
    try:
        stats = train_step()
    except (ValueError, RuntimeError) as e:
        raise _diverged(e, suspects, f"at step {step}, in {who}.train_step") from e
    for key, value in stats.items():
        if not GUARDED.search(key):
            continue
        try:
            x = float(value)
        except (TypeError, ValueError):
            continue  # not a number (no learner logs such a stat today)
        if not math.isfinite(x):
            bad = non_finite_parameters(suspects)
            raise NonFiniteError(f"non-finite {key} ({x}) from {who} at step {step}"
                                 + (f" (non-finite parameter {bad})" if bad else ""))
    return stats


def checked_act(act: Callable[[], Any], step: int, learners: Iterable[Any]) -> Any:
    """``act()``, or a NonFiniteError when acting failed on non-finite numbers: parameters so large (after a
    huge learning rate) that the policy's outputs overflow are still finite, so only the error says so."""
    try:
        return act()
    except (ValueError, RuntimeError) as e:
        raise _diverged(e, list(learners), f"at step {step}, while acting") from e


def _diverged(e: Exception, suspects: list[Any], where: str) -> Exception:
    """A NonFiniteError for an error caused by non-finite parameters or values (torch.distributions'
    argument checks and multinomial report NaN/inf as invalid values); else the error itself, re-raised."""
    first = str(e).splitlines()[0][:100] if str(e) else ""
    bad = non_finite_parameters(suspects)
    if bad is not None:
        return NonFiniteError(f"non-finite parameter {bad} {where} ({type(e).__name__}: {first})")
    if re.search(r"invalid values|\bnan\b|\binf\b", str(e), re.IGNORECASE):
        return NonFiniteError(f"non-finite values {where} ({type(e).__name__}: {first})")
    return e


def non_finite_parameters(learners: Iterable[Any]) -> str | None:
    """``Learner.name`` of the first parameter that is not finite, if any. Buffers are left out: some hold
    infinities by design (e.g. the log of a zero probability)."""
    for learner in learners:
        if not isinstance(learner, torch.nn.Module):
            continue
        for name, t in learner.named_parameters():
            if not torch.isfinite(t).all():
                return f"{type(learner).__name__}.{name}"
    return None


def check_parameters(learners: Iterable[Any], step: int, when: str) -> None:
    """A NonFiniteError if an update left a parameter non-finite (its loss was still finite): checked after
    each round of updates and before every checkpoint, so a diverged model is never saved or acted with."""
    bad = non_finite_parameters(learners)
    if bad is not None:
        raise NonFiniteError(f"non-finite parameter {bad} {when} at step {step}")
