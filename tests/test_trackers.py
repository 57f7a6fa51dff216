"""logger=mlflow, wandb and many: a tiny real run, read back from what each tracker stored."""

import sys

import pytest
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger

from convlens.startup.run_task import convlens_error_in
from convlens.tasks.train import instantiate_group, train
from wandb_records import run_summary

TINY = [
    "callbacks.rich_progress_bar=null",
    "threads=1",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=8",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


@pytest.mark.slow
def test_mlflow_store_holds_params_every_validation_pictures_and_best_checkpoint(train_config, tmp_path):
    from mlflow.tracking import MlflowClient

    logs = tmp_path / "logs"
    metrics = train(train_config(*TINY, "logger=mlflow", f"paths.log_dir={logs}", "run_name=tracked"))
    client = MlflowClient(f"sqlite:///{logs}/mlflow/mlflow.db")  # the SQLite database the run wrote
    (run,) = client.search_runs([client.get_experiment_by_name("convlens").experiment_id])
    assert run.info.run_name == "tracked"
    params = run.data.params
    assert params["optimizer/lr"] == "0.001" and params["net/depth"] == "[4, 8]"  # the model's, at the start
    assert params["batch_size"] == "64" and params["seed"] == "12345"  # the run's, at the end
    checks = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(checks) == 2  # 8 steps, a validation every 4
    best = client.get_metric_history(run.info.run_id, "val/acc_best")
    assert best[-1].value == pytest.approx(metrics["val/acc_best"])
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.data.metrics["wall_seconds"] == pytest.approx(metrics["wall_seconds"])
    assert run.data.tags["best_ckpt"] == metrics["best_ckpt"]
    pictures = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "pictures")}
    assert {"pictures/kernels_conv1.png", "pictures/feature_maps_conv2.png", "pictures/error_curves.png"} <= pictures


@pytest.mark.slow
def test_wandb_offline_run_folder_holds_the_summary(train_config, tmp_path):
    metrics = train(train_config(*TINY, "logger=wandb", "run_name=offline"))
    (run_folder,) = (tmp_path / "wandb").glob("offline-run-*")  # what wandb sync uploads later
    summary = run_summary(run_folder)
    assert summary["val/acc_best"] == pytest.approx(metrics["val/acc_best"])
    assert summary["best_ckpt"] == metrics["best_ckpt"]
    assert summary["pictures/kernels_conv1/_type"] == "images/separated"
    assert len(list((run_folder / "files" / "media" / "images" / "pictures").glob("*.png"))) == 6


def test_many_writes_tensorboard_csv_and_mlflow(train_config, tmp_path):
    loggers = instantiate_group(train_config("logger=many", f"paths.log_dir={tmp_path / 'logs'}").logger)
    assert [type(logger) for logger in loggers] == [TensorBoardLogger, CSVLogger, MLFlowLogger]


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_missing_extra_names_the_pip_command(train_config, tmp_path, monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # what Python does for a package that is not installed
    with pytest.raises(Exception) as raised:
        instantiate_group(train_config(f"logger={tracker}", f"paths.log_dir={tmp_path}").logger)
    error = convlens_error_in(raised.value)
    assert error is not None and f"logger={tracker} needs {tracker}" in str(error)
    assert str(error).endswith(f"pip install -e '.[{tracker}]'")
