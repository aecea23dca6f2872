"""Intrinsic rewards for exploration: none, ICM, RND and ensemble disagreement (see base.py)."""

from wm.intrinsic.base import Intrinsic, IntrinsicConfig, NoIntrinsic

__all__ = ["Intrinsic", "IntrinsicConfig", "NoIntrinsic"]
