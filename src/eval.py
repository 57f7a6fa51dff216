"""Test a checkpoint on MNIST's test half: python src/eval.py ckpt_path=<run dir>/checkpoints/last.ckpt"""

import hydra
from omegaconf import DictConfig

import convlens.startup.early_ctrl_c  # noqa: F401  (first: Ctrl-C during the imports below is one line)
from convlens.startup.run_task import CONFIG_DIR, report_errors, run_hydra, set_project_root
from convlens.tasks.train import evaluate

set_project_root()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    report_errors(lambda: evaluate(cfg))


if __name__ == "__main__":
    run_hydra(main)
