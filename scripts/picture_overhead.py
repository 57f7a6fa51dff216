"""How much the ConvNetPictures callback costs: one training run, each callback hook timed by Lightning's profiler.

    python scripts/picture_overhead.py [hydra overrides]     # default: one full epoch, CPU, 9 validation checks

Prints the seconds spent in the callback's hooks, the fit time, and their ratio (the issue's budget: < 5%).
Then, as a cross-check, trains the same run with the callback off and compares wall time and val/acc: on a
shared machine that difference is noisier than the profiler's figure.
"""

import sys
import time

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict
from pytorch_lightning import Callback
from pytorch_lightning.profilers import SimpleProfiler

from convlens.callbacks.convnet_pictures import ConvNetPictures
from convlens.cli import CONFIG_DIR, PROJECT_ROOT, set_project_root
from convlens.training import build_trainer, instantiate_group, prepare_process

ONE_EPOCH = ["trainer=cpu", "trainer.max_epochs=1", "test=false", "callbacks.rich_progress_bar=null",
             "trainer.enable_model_summary=false"]
PROFILED = ["+trainer.profiler._target_=pytorch_lightning.profilers.SimpleProfiler",
            "+trainer.profiler.filename=profile"]  # the hook timings; the full table goes to <run>/fit-profile.txt
HOOK_PREFIX = "[Callback]ConvNetPictures."


class ValAccRecorder(Callback):
    def __init__(self) -> None:
        self.val_acc: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val_acc.append(float(trainer.callback_metrics["val/acc"]))


def fit(overrides: list[str], run_dir: str) -> tuple[float, SimpleProfiler, list[float]]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = run_dir
    prepare_process(cfg)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    recorder = ValAccRecorder()
    trainer = build_trainer(cfg, [*instantiate_group(cfg.get("callbacks")), recorder],
                            instantiate_group(cfg.get("logger")))
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return time.perf_counter() - started, trainer.profiler, recorder.val_acc


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):  # the other arguments are Hydra overrides, not options
        print(__doc__.strip())
        return
    set_project_root()
    overrides = ONE_EPOCH + PROFILED + sys.argv[1:]
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    log_dir = PROJECT_ROOT / "logs" / "picture_overhead" / stamp
    seconds_on, profiler, acc_on = fit(overrides, str(log_dir / "on"))
    hooks = {name[len(HOOK_PREFIX):]: sum(durations) for name, durations in profiler.recorded_durations.items()
             if name.startswith(HOOK_PREFIX) and name[len(HOOK_PREFIX):] in vars(ConvNetPictures)}
    in_callback = sum(hooks.values())
    print(f"callback on : fit {seconds_on:.1f} s, of which {in_callback:.2f} s in ConvNetPictures hooks "
          f"= {100 * in_callback / seconds_on:.2f}% of the fit "
          f"({', '.join(f'{hook} {seconds:.2f} s' for hook, seconds in sorted(hooks.items()))})")
    seconds_off, _, acc_off = fit(overrides + ["callbacks.convnet_pictures=null"], str(log_dir / "off"))
    print(f"callback off: fit {seconds_off:.1f} s; wall-time difference {seconds_on - seconds_off:+.1f} s "
          f"({100 * (seconds_on / seconds_off - 1):+.1f}%, noisy on a shared machine)")
    print(f"val/acc at the {len(acc_on)} checks identical with it on and off: {acc_on == acc_off}")


if __name__ == "__main__":
    main()
