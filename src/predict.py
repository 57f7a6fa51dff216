"""Classify your own images: python src/predict.py ckpt_path=<ckpt> images=<file | [a.png,b.png] | folder>"""

import hydra
from omegaconf import DictConfig

import convlens.startup.early_ctrl_c  # noqa: F401  (first: Ctrl-C during the imports below is one line)
from convlens.startup.run_task import CONFIG_DIR, report_errors, run_hydra, set_project_root
from convlens.tasks.predict import predict

set_project_root()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    report_errors(lambda: predict(cfg))


if __name__ == "__main__":
    run_hydra(main)
