"""Checkpoints that cannot be used: missing, not a checkpoint, truncated, another architecture, unsafe."""

import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import TINY_RUN, RunsCode, compose_config
from convlens.errors import ConvlensError
from convlens.models.classifier import ConvNetClassifier
from convlens.models.from_checkpoint import (
    checkpoint_to_resume,
    load_classifier,
    newest_last_checkpoint,
    read_checkpoint,
)
from convlens.tasks.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    """A real last.ckpt from a 10-step run."""
    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config("train", [*TINY_RUN, f"paths.data_dir={data_dir}"], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def resume(tmp_path, data_dir, *overrides):
    return train(compose_config("train", [*TINY_RUN, f"paths.data_dir={data_dir}", *overrides], tmp_path))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.slow
def test_a_truncated_checkpoint_is_named_both_for_eval_and_for_resuming(trained, tmp_path, data_dir):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained.read_bytes()[: trained.stat().st_size // 2])
    with pytest.raises(ConvlensError) as error:
        load_classifier(truncated)
    assert one_line(error).startswith(f"{truncated} is not a checkpoint (not a PyTorch archive: truncated")
    with pytest.raises(ConvlensError, match="is not a checkpoint"):
        resume(tmp_path / "run", data_dir, f"ckpt_path={truncated}")


@pytest.mark.slow
def test_damaged_weights_are_caught_by_their_crc(trained, tmp_path):
    damaged = tmp_path / "damaged.ckpt"
    payload = bytearray(trained.read_bytes())
    with zipfile.ZipFile(trained) as archive:  # flip bytes inside the largest tensor's record
        member = max(archive.infolist(), key=lambda info: info.file_size)
        start = member.header_offset + 30 + len(member.filename) + len(member.extra) + 100
    payload[start : start + 16] = bytes(16)
    damaged.write_bytes(bytes(payload))
    with pytest.raises(ConvlensError) as error:
        load_classifier(damaged)
    # The record inside the file, not the writer's temporary name that the archive's top folder carries.
    assert member.filename.startswith(".last.ckpt.")
    record = member.filename.partition("/")[2]
    assert one_line(error).startswith(f"{damaged} is damaged (its record {record} fails its CRC check)")
    assert ".last.ckpt." not in one_line(error)


@pytest.mark.slow
def test_resuming_with_another_architecture_names_the_shapes_and_the_settings(trained, tmp_path, data_dir):
    with pytest.raises(ConvlensError) as error:
        resume(tmp_path, data_dir, f"ckpt_path={trained}", "model.net.hidden=32", "model.net.depth=[6,8]")
    message = one_line(error)
    assert message.startswith(f"{trained} is from a different architecture: ")
    assert "net.conv1.weight (4, 1, 5, 5) there, (6, 1, 5, 5) here" in message
    assert "net.fc1.weight (512, 392) there, (32, 392) here" in message
    assert "model.net.depth=[4,8] model.net.hidden=512" in message
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_ckpt_path_last_picks_the_newest_runs_last_ckpt(trained, tmp_path, data_dir):
    runs = tmp_path / "logs" / "train" / "runs"
    with pytest.raises(ConvlensError) as error:
        newest_last_checkpoint(runs)
    assert one_line(error).startswith(f"ckpt_path=last, but no run under {runs} has checkpoints/last.ckpt")

    for age, name in ((200, "2026-01-01_00-00-00_1"), (100, "2026-01-02_00-00-00_2")):
        copy = runs / name / "checkpoints" / "last.ckpt"
        copy.parent.mkdir(parents=True)
        shutil.copy(trained, copy)
        os.utime(copy, (copy.stat().st_atime, copy.stat().st_mtime - age))
    (runs / "2026-01-03_00-00-00_3" / "checkpoints").mkdir(parents=True)  # a run that saved nothing
    assert newest_last_checkpoint(runs) == runs / "2026-01-02_00-00-00_2" / "checkpoints" / "last.ckpt"

    metrics = resume(
        tmp_path / "resumed", data_dir, "ckpt_path=last", f"paths.log_dir={tmp_path / 'logs'}", "trainer.max_epochs=2"
    )
    assert metrics["steps"] == 20  # 10 restored + 10 more


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(ConvlensError) as error:
        checkpoint_to_resume(tmp_path / "nope.ckpt", tmp_path, torch.nn.Linear(1, 1))
    assert one_line(error) == (
        f"checkpoint {tmp_path / 'nope.ckpt'} does not exist; pass ckpt_path=<run dir>/checkpoints/<name>.ckpt"
    )


def test_a_checkpoint_that_would_run_code_is_refused_unopened(tmp_path):
    marker = tmp_path / "code-ran"
    model = ConvNetClassifier(net={}, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    booby_trapped = tmp_path / "trap.ckpt"
    torch.save({"state_dict": model.state_dict(), "payload": RunsCode(marker)}, booby_trapped)
    with pytest.raises(ConvlensError) as error:
        read_checkpoint(booby_trapped)
    assert "is not a readable convlens checkpoint" in one_line(error)
    assert not marker.exists()
    with pytest.raises(ConvlensError):
        load_classifier(booby_trapped)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # what weights_only=True guards against, shown to be real
        torch.load(booby_trapped, weights_only=True)
    torch.load(booby_trapped, weights_only=False)
    assert marker.exists()


@pytest.mark.slow
def test_every_checkpoint_the_runs_write_loads_with_weights_only(trained):
    for path in trained.parent.glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        assert {"state_dict", "loops", "callbacks", "optimizer_states"} <= checkpoint.keys()
