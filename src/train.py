"""Train the ConvNet: python src/train.py [overrides], e.g. trainer.max_epochs=5 model.optimizer.lr=0.01"""

import hydra
from omegaconf import DictConfig

import convlens.startup.early_ctrl_c  # noqa: F401  (first: Ctrl-C during the imports below is one line)
from convlens.startup.run_task import CONFIG_DIR, report_errors, run_hydra, set_project_root
from convlens.tasks.train import train

set_project_root()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = report_errors(lambda: train(cfg))  # in a multirun a failed job returns None and the sweep goes on
    return None if metrics is None else metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    run_hydra(main)
