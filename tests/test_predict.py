"""predict.py: a folder-trained checkpoint names its classes; unreadable files become error rows and exit 1."""

import csv

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from conftest import compose_config, run_entry
from convlens.data.own_images import load_digit
from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier
from convlens.startup.run_task import PROJECT_ROOT
from convlens.tasks.predict import classify, conversion_for, image_paths, predict
from convlens.tasks.train import train
from digit_folders import write_digit_folder

PREPROCESS = OmegaConf.load(PROJECT_ROOT / "conf" / "preprocess" / "mnist.yaml")
NET = {"depth": [4, 8], "hidden": 512, "dropout": 0.5, "image_size": 28}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_mnist_checkpoints_get_digit_conversion_and_digit_names(data_dir, tmp_path):
    folder = write_digit_folder(data_dir, tmp_path / "digits", per_class=2)
    model = ConvNetClassifier(net={**NET, "num_classes": 10}, optimizer=SGD).eval()
    assert conversion_for(model, "auto") == "digit"
    paths, skipped = image_paths(folder / "zero")
    assert skipped == {}
    predictions = classify(model, paths, "digit", PREPROCESS, top_k=3, batch_size=1)
    expected = model(torch.stack([load_digit(p, **PREPROCESS) for p in paths])).exp()
    for prediction, probabilities in zip(predictions, expected, strict=True):
        best = probabilities.topk(3)
        assert prediction.classes == [str(int(i)) for i in best.indices]
        assert prediction.probabilities == pytest.approx(best.values.tolist())
    named = ConvNetClassifier(net={**NET, "num_classes": 3}, optimizer=SGD, class_names=["a", "b", "c"])
    assert conversion_for(named, "auto") == "resize" and conversion_for(named, "digit") == "digit"


def test_no_images_is_refused_in_one_sentence(tmp_path):
    for images in (None, [], tmp_path):
        with pytest.raises(ConvlensError, match="images="):
            image_paths(images)


@pytest.mark.slow
def test_predict_names_the_folder_classes_and_reports_bad_files(data_dir, train_config, tmp_path):
    train_dir = write_digit_folder(data_dir, tmp_path / "train", per_class=40)
    held_out = write_digit_folder(data_dir, tmp_path / "held_out", per_class=4, first=5000)
    metrics = train(
        train_config(
            "data=imagefolder",
            f"data.root={train_dir}",
            "data.batch_size=16",
            "trainer.max_epochs=4",
            "trainer.val_check_interval=1.0",
            "model.optimizer.lr=0.05",
            "callbacks.convnet_pictures.probe_indices=[0]",
        )
    )
    ckpt = metrics["best_ckpt"]
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert saved["class_names"] == ["one", "two", "zero"] and saved["net"]["num_classes"] == 3
    assert metrics["steps"] == 4 * 6  # 96 training images in batches of 16

    images = sorted(held_out.rglob("*.png"))
    bad = tmp_path / "scan.png"
    bad.write_text("not a picture")
    listed = ",".join(str(p) for p in [*images, bad])
    result = run_entry(
        "predict.py", f"ckpt_path={ckpt}", f"images=[{listed}]", f"hydra.run.dir={tmp_path / 'predict'}", check=False
    )

    rows = read_rows(tmp_path / "predict" / "predictions.csv")
    assert [row["image"] for row in rows] == [str(p) for p in [*images, bad]]
    good = rows[:-1]
    assert all(row["class"] in {"zero", "one", "two"} and not row["error"] for row in good)
    assert all(row["class_3"] and float(row["probability"]) >= float(row["probability_2"]) for row in good)
    correct = sum(row["class"] == row["image"].split("/")[-2] for row in good)
    assert correct >= 8  # of 12 unseen digits; chance is 4
    assert rows[-1]["class"] == "" and "is not an image" in rows[-1]["error"]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1 of 13 images could not be classified" in result.stderr.strip().splitlines()[-1]
    assert "zero" in result.stdout and "scan.png" in result.stdout


def test_ckpt_path_last_classifies_with_the_newest_runs_last_checkpoint(data_dir, tmp_path):
    runs = tmp_path / "logs" / "train" / "runs"
    for run, classes in (("2026-01-01_00-00-00_1", ["a", "b"]), ("2026-01-02_00-00-00_1", ["one", "two", "zero"])):
        (runs / run / "checkpoints").mkdir(parents=True)
        model = ConvNetClassifier(net={**NET, "num_classes": len(classes)}, optimizer=SGD, class_names=classes)
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__,
            },
            runs / run / "checkpoints" / "last.ckpt",
        )
    image = sorted(write_digit_folder(data_dir, tmp_path / "digits", per_class=1).rglob("*.png"))[0]
    cfg = compose_config(
        "predict", ["ckpt_path=last", f"images={image}", f"paths.log_dir={tmp_path / 'logs'}"], tmp_path / "predict"
    )
    (tmp_path / "predict").mkdir()
    [prediction] = predict(cfg)
    assert sorted(prediction.classes) == ["one", "two", "zero"]  # the newest run's classes, not the older one's
