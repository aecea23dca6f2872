"""wm's Hydra plugin: where the named sweeps are, and the dataclasses as the one source of defaults.

Hydra discovers plugins in the ``hydra_plugins`` namespace package (the editable install maps it; ``python
train.py`` also puts the repository root on ``sys.path``) and asks this one for the config search path before
every composition. It adds the root of the checkout whose ``wm`` is imported, where the top-level ``sweep/``
group lives, and stores each option's Config defaults in Hydra's ConfigStore as ``schema/<group>/<option>`` (wm.validate.store_defaults),
which the option's yaml lists first: the yaml then holds only what differs from its dataclass.
"""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class WmConf(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        import wm.validate

        conf = Path(wm.validate.__file__).resolve().parents[1] / "conf"  # the checkout whose wm is imported
        wm.validate.store_defaults(conf)
        search_path.append(provider="wm", path=f"file://{conf.parent}")
