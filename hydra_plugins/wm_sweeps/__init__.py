"""Hydra finds the named sweeps in the repository's top-level ``sweep/`` folder (``python train.py sweep=<name>``).

Hydra discovers plugins in the ``hydra_plugins`` namespace package on ``sys.path``: ``python train.py`` puts the
repository root there, so this one adds that root to the config search path, where the ``sweep`` group lives.
"""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ROOT = Path(__file__).resolve().parents[2]


class WmSweeps(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="wm-sweeps", path=f"file://{ROOT}")
