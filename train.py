"""The single entry point: ``python train.py [group=option ...] [key=value ...]`` (see README.md)."""

import hydra
from omegaconf import DictConfig

import wm.cli


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    wm.cli.task_started()
    from wm import run  # heavy (torch, gymnasium): only once the command line is known to be valid
    # (`import wm.run` here would make `wm` a local name and break the line above)

    return run.main(cfg)


if __name__ == "__main__":
    wm.cli.run(main)
