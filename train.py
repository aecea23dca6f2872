"""The single entry point: ``python train.py [group=option ...] [key=value ...]`` (see README.md)."""

import hydra
from omegaconf import DictConfig

import wm.cli
import wm.run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    wm.cli.task_started()
    return wm.run.main(cfg)


if __name__ == "__main__":
    wm.cli.run(main)
