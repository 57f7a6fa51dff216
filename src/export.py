"""Export a checkpoint for use outside convlens:
python src/export.py ckpt_path=<ckpt | last> format=onnx|torch_export
"""

import hydra
from omegaconf import DictConfig

import convlens.startup.early_ctrl_c  # noqa: F401  (first: Ctrl-C during the imports below is one line)
from convlens.startup.run_task import CONFIG_DIR, report_errors, run_hydra, set_project_root
from convlens.tasks.export import export

set_project_root()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    report_errors(lambda: export(cfg))


if __name__ == "__main__":
    run_hydra(main)
