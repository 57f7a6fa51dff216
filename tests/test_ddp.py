"""DDP simulated with two CPU processes (trainer=ddp_cpu): exact validation/test shards, reduced metrics."""

import json
import random
import socket
from pathlib import Path

import pytest
import yaml

from conftest import CHUNKED, compose_config, run_entry
from convlens.startup.run_task import PROJECT_ROOT
from index_recording import read_batches

TESTS_DIR = Path(__file__).resolve().parent
EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")


def port_below_the_ephemeral_range() -> int:
    """A free port for gloo's rendezvous that no other process is handed meanwhile.

    Lightning picks one by binding port 0, i.e. from the kernel's ephemeral range, and gloo binds it moments
    later; in between, any outgoing connection on the machine (another test run's gloo peers among them) may
    be given the same port, and the run fails with "address already in use". Below the range the kernel
    never hands a port out by itself.
    """
    low = int(EPHEMERAL_PORTS.read_text().split()[0]) if EPHEMERAL_PORTS.is_file() else 32768
    for port in random.sample(range(20_000, low), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


@pytest.mark.slow
def test_ddp_sees_each_val_and_test_index_once_and_eval_agrees(data_dir, tmp_path):
    record_dir = tmp_path / "indices"
    record_dir.mkdir()
    run_dir = tmp_path / "run"
    run_entry(
        "train.py",
        "trainer=ddp_cpu",
        "threads=1",
        "data._target_=index_recording.IndexRecordingMNIST",
        f"+data.record_dir={record_dir}",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=8",
        "trainer.val_check_interval=1.0",
        "trainer.check_val_every_n_epoch=2",
        "+trainer.num_sanity_val_steps=0",
        "model.optimizer.lr=0.1",
        "callbacks.rich_progress_bar=null",
        "callbacks.convnet_pictures=null",
        "trainer.enable_model_summary=false",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        env={"PYTHONPATH": f"{TESTS_DIR}:{PROJECT_ROOT / 'src'}", "MASTER_PORT": str(port_below_the_ephemeral_range())},
    )
    trained = json.loads((run_dir / "metrics.json").read_text())

    # One validation pass (end of epoch 2): the two ranks' shares are disjoint and cover indices 0..4999 once.
    val = {rank: sum(read_batches(record_dir / f"fit-test_set-rank{rank}.txt"), []) for rank in (0, 1)}
    assert len(val[0]) == len(val[1]) == 2500
    assert sorted(val[0] + val[1]) == list(range(5000))
    test = {rank: sum(read_batches(record_dir / f"test-test_set-rank{rank}.txt"), []) for rank in (0, 1)}
    assert sorted(test[0] + test[1]) == list(range(5000, 10_000))

    # Training: with stepping=chunked each epoch's 8 steps are one call, gathered at once (256 images per rank);
    # cut into the steps' batches, the global batch of 64 is 32 per rank; ranks draw disjoint images; epoch 2
    # reshuffles.
    per_call = 8 if CHUNKED else 1
    gathered = {rank: read_batches(record_dir / f"fit-train_set-rank{rank}.txt") for rank in (0, 1)}
    assert all(len(call) == per_call * 32 for rank in (0, 1) for call in gathered[rank])
    assert len(gathered[0]) == 16 // per_call
    train = {rank: [call[i : i + 32] for call in gathered[rank] for i in range(0, len(call), 32)] for rank in (0, 1)}
    assert all(len(batch) == 32 for rank in (0, 1) for batch in train[rank]) and len(train[0]) == 16
    epoch1 = {rank: sum(train[rank][:8], []) for rank in (0, 1)}
    assert not set(epoch1[0]) & set(epoch1[1])
    assert sum(train[0][8:], []) != epoch1[0]
    # ddp_spawn's processes do not report their loop counters or timer back: unknown, not a wrong number
    assert trained["steps"] is None and trained["train_loop_seconds"] is None and trained["seconds_per_epoch"] is None

    eval_dir = tmp_path / "eval"
    run_entry(
        "eval.py",
        f"ckpt_path={trained['best_ckpt']}",
        "trainer=cpu",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={eval_dir}",
    )
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert trained["test/acc"] > 0.2  # learned beyond chance (0.1), so a per-rank accuracy would differ
    assert evaluated["test/acc"] == trained["test/acc"]


def test_ddp_trainer_configs_resolve(tmp_path):
    ddp = compose_config("train", ["trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4"], tmp_path).trainer
    assert (ddp.accelerator, ddp.strategy, ddp.devices, ddp.num_nodes) == ("gpu", "ddp", 4, 2)
    assert ddp.use_distributed_sampler is False
    gpu = compose_config("train", ["trainer=gpu"], tmp_path).trainer
    assert (gpu.accelerator, gpu.devices, gpu.use_distributed_sampler) == ("gpu", 1, False)
    simulated = compose_config("train", ["trainer=ddp_cpu"], tmp_path).trainer
    assert (simulated.accelerator, simulated.strategy, simulated.devices) == ("cpu", "ddp_spawn", 2)


SLURM = (
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=gpu",
    "trainer=ddp",
    "trainer.num_nodes=2",
    "trainer.devices=4",
)


@pytest.mark.slow
def test_the_slurm_request_prints_resolved_and_cfg_hydra_resolve_is_one_line(tmp_path):
    shown = run_entry(
        "train.py", *SLURM, f"paths.log_dir={tmp_path}", "--cfg", "all", "--package", "hydra.launcher", "--resolve"
    )  # the command docs/devices.md shows
    request = yaml.safe_load(shown.stdout)
    assert (request["nodes"], request["gpus_per_node"], request["tasks_per_node"], request["partition"]) == (
        2,
        4,
        4,
        "gpu",
    )
    assert request["submitit_folder"].startswith(f"{tmp_path}/train/multiruns/") and shown.stderr == ""
    refused = run_entry("train.py", *SLURM, "--cfg", "hydra", "--resolve", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: Interpolation key 'paths.log_dir' not found: --cfg hydra leaves out the run's settings, which "
        "Hydra's own read (hydra.run.dir and hydra.sweep.dir: paths.log_dir; the SLURM launcher: trainer.*); "
        "resolve them with the rest: --cfg all --package hydra --resolve (or --package hydra.launcher)"
    ]
