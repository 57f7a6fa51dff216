"""Time convlens against the tutorial's hand-written loop and the floor, each run as its own process, alternating.

    python scripts/benchmark.py [--epochs 3] [--runs 3] [--device cpu|cuda] [--graphs] [--before-root DIR]
                                [--out logs/benchmark.json] [B's overrides]

A is ``scripts/tutorial_loop.py`` (plain PyTorch, per-item ToTensor, a DataLoader); B is ``src/train.py`` with
its defaults (logging, checkpoints, progress bar, pictures and every default callback on); F is the floor,
``scripts/floor_loop.py``: the same steps as a bare loop over data already in memory; on CUDA also G, that loop
replayed as a CUDA graph; with ``--graphs`` also C, B with ``model.cuda_graphs=true``; with ``--before-root`` also
P, B's command in another checkout (a commit before a change), for a before/after whose ratios to A come from the
same tutorial runs. All run the same epochs on the same device (``--device cuda`` also gives B and C
``trainer=gpu``), in the order A B F [P] [C] [G], A B F [P] [C] [G], ... so the noise of a shared machine spreads
over all.
For each run it records the whole-process wall seconds (timed here), the training-loop seconds per epoch each
reports for itself (A and F time their epoch loops; B's ``seconds_per_epoch`` in ``metrics.json`` is
Lightning's ``Timer`` from the start of training to its end, validation checks included; setup, the sanity
check and the test count only in the whole-process time, as A's data loading and test do), the child's own
CPU time and peak resident memory (``os.wait4``), and the final test accuracy. It prints medians [min–max],
the ratios B/A and B/F, and whether the issue's targets are met. Extra arguments are Hydra overrides for B.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]

# The targets for B/A, checked against the medians and reported (never asserted).
TARGETS = {"seconds_per_epoch": 0.65, "wall_seconds": 0.85}
GRAPH_TARGETS = {"seconds_per_epoch": 0.5, "wall_seconds_20_epochs": 25.0}  # C on one GPU, in seconds
MAX_RSS_MB_B = 1200
MIN_TEST_ACC_20_EPOCHS = 0.99

MEASURES = (  # key, label, how to print it
    ("wall_seconds", "whole process, s", "{:.2f}"),
    ("seconds_per_epoch", "training loop per epoch, s", "{:.2f}"),
    ("cpu_seconds", "whole process CPU time, s", "{:.1f}"),
    ("peak_rss_mb", "peak resident memory, MB", "{:.0f}"),
    ("test_acc", "test accuracy", "{:.4f}"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each of A and B (default 3)")
    parser.add_argument("--out", default=str(ROOT / "logs" / "benchmark.json"), help="where to write the JSON")
    parser.add_argument("--data-dir", default=str(ROOT / "data"), help="MNIST's folder, for both A and B")
    parser.add_argument("--limit-train-batches", type=int, default=None, help="smoke runs: batches per epoch")
    parser.add_argument("--limit-val-batches", type=int, default=None, help="smoke runs: batches per validation")
    parser.add_argument("--limit-test-batches", type=int, default=None, help="smoke runs: batches of the test")
    parser.add_argument("--val-check-interval", type=int, default=100, help="validate every N training batches")
    parser.add_argument(
        "--tutorial-threads",
        type=int,
        default=None,
        help="torch threads for A (default: torch's own choice, as the tutorial runs)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where every side trains")
    parser.add_argument(
        "--graphs", action="store_true", help="also C: B's command with model.cuda_graphs=true, in the same rotation"
    )
    parser.add_argument(
        "--convlens-root",
        default=str(ROOT),
        help="the checkout whose src/train.py is B, e.g. an older commit for a before/after",
    )
    parser.add_argument(
        "--before-root",
        default=None,
        help="also P: src/train.py of another checkout (an older commit), with B's settings, in the same rotation: "
        "a before/after in one run",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for B (and P), e.g. trainer=gpu")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.runs < 1:
        parser.error("--epochs and --runs must be at least 1")
    return args


def loop_command(args: argparse.Namespace, script: str, out: Path) -> list[str]:
    """A or F: a plain loop script, given the same data, epochs, validation interval, device and limits as B."""
    return [
        sys.executable,
        str(ROOT / "scripts" / script),
        "--data-dir",
        args.data_dir,
        "--epochs",
        str(args.epochs),
        "--val-check-interval",
        str(args.val_check_interval),
        "--out",
        str(out),
        "--device",
        args.device,
        *limit_options(args),
    ]


def tutorial_command(args: argparse.Namespace, out: Path) -> list[str]:
    command = loop_command(args, "tutorial_loop.py", out)
    threads = [] if args.tutorial_threads is None else ["--threads", str(args.tutorial_threads)]
    return command + threads


def floor_command(args: argparse.Namespace, out: Path, graph: bool) -> list[str]:
    command = loop_command(args, "floor_loop.py", out)
    return command + ["--graph"] if graph else command


def limit_options(args: argparse.Namespace) -> list[str]:
    return [
        option
        for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches")
        if getattr(args, name) is not None
        for option in ("--" + name.replace("_", "-"), str(getattr(args, name)))
    ]


def convlens_command(args: argparse.Namespace, run_dir: Path, root: str) -> list[str]:
    command = [
        sys.executable,
        str(Path(root) / "src" / "train.py"),  # its own src/ is first on sys.path, so it runs its own convlens
        f"trainer.max_epochs={args.epochs}",
        f"trainer.val_check_interval={args.val_check_interval}",
        f"paths.data_dir={args.data_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        if getattr(args, name) is not None:
            command.append(f"trainer.{name}={getattr(args, name)}")
    return command + (["trainer=gpu"] if args.device == "cuda" else []) + list(args.overrides)


def run_process(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` to the end: its wall seconds, and its own CPU time and peak resident memory (not ours)."""
    started = time.perf_counter()
    with open(log, "w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"error: {' '.join(command)} exited with {process.returncode}:\n{tail}")
    return {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }  # ru_maxrss is in KiB


def run_loop(command: list[str], out: Path, log: Path) -> dict[str, Any]:
    """A, F or G: a plain script that writes its own JSON."""
    measured = run_process(command, log)
    reported = json.loads(out.read_text())
    return {
        **measured,
        "seconds_per_epoch": reported["seconds_per_epoch"],
        "test_acc": reported["test_acc"],
        "steps": reported["steps"],
    }


def run_tutorial(args: argparse.Namespace, scratch: Path, index: int) -> dict[str, Any]:
    out = scratch / f"A{index}.json"
    return run_loop(tutorial_command(args, out), out, scratch / f"A{index}.log")


def run_floor(args: argparse.Namespace, scratch: Path, index: int) -> dict[str, Any]:
    out = scratch / f"F{index}.json"
    return run_loop(floor_command(args, out, graph=False), out, scratch / f"F{index}.log")


def run_graph_floor(args: argparse.Namespace, scratch: Path, index: int) -> dict[str, Any]:
    out = scratch / f"G{index}.json"
    return run_loop(floor_command(args, out, graph=True), out, scratch / f"G{index}.log")


def run_convlens(
    args: argparse.Namespace, scratch: Path, index: int, side: str = "B", extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    run_dir = scratch / f"{side}{index}"
    root = args.before_root if side == "P" else args.convlens_root
    measured = run_process([*convlens_command(args, run_dir, root), *extra], scratch / f"{side}{index}.log")
    reported = json.loads((run_dir / "metrics.json").read_text())
    return {
        **measured,
        "seconds_per_epoch": reported["seconds_per_epoch"],
        "test_acc": reported["test/acc"],
        "steps": reported["steps"],
    }


def run_convlens_before(args: argparse.Namespace, scratch: Path, index: int) -> dict[str, Any]:
    return run_convlens(args, scratch, index, side="P")


def run_convlens_graphed(args: argparse.Namespace, scratch: Path, index: int) -> dict[str, Any]:
    return run_convlens(args, scratch, index, side="C", extra=("model.cuda_graphs=true",))


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": statistics.median(run[key] for run in runs),
            "min": min(run[key] for run in runs),
            "max": max(run[key] for run in runs),
        }
        for key, _, _ in MEASURES
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


SIDE_NAMES = {
    "A": "A: tutorial loop",
    "B": "B: src/train.py",
    "C": "C: B with CUDA graphs",
    "P": "P: B before (--before-root)",
    "F": "F: floor, eager",
    "G": "G: floor, CUDA graph",
}


def report(result: dict[str, Any], console: Console) -> None:
    sides = [side for side in SIDE_NAMES if side in result["sides"]]
    table = Table(
        title=f"convlens (B) vs the tutorial's loop (A) and the floor (F): {result['epochs']} epochs on "
        f"{result['device']}, medians of {result['runs']} runs [min–max]"
    )
    ratio_columns = [name for name in result["ratios"]]
    for column in ("", *(SIDE_NAMES[side] for side in sides), *ratio_columns):
        table.add_column(column, justify="right" if column else "left")
    for key, label, fmt in MEASURES:
        cells = [
            f"{fmt.format(s['median'])} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"
            for s in (result[side][key] for side in sides)
        ]
        table.add_row(label, *cells, *(f"{result['ratios'][name][key]:.2f}" for name in ratio_columns))
    console.print(table)
    for line in result["verdicts"]:
        console.print(line, highlight=False)


def verdicts(result: dict[str, Any]) -> list[str]:
    ratios, b = result["ratios"]["B/A"], result["B"]
    lines = [
        f"{'met' if ratios[key] <= limit else 'MISSED'}: B/A {key} {ratios[key]:.2f} (target ≤ {limit})"
        for key, limit in TARGETS.items()
    ]
    rss = b["peak_rss_mb"]["max"]
    verdict = "met" if rss <= MAX_RSS_MB_B else "MISSED"
    lines.append(f"{verdict}: B's peak memory {rss:.0f} MB (target ≤ {MAX_RSS_MB_B})")
    if result["epochs"] >= 20:
        acc = b["test_acc"]["min"]
        lines.append(
            f"{'met' if acc >= MIN_TEST_ACC_20_EPOCHS else 'MISSED'}: B's test accuracy {acc:.4f} "
            f"(target ≥ {MIN_TEST_ACC_20_EPOCHS})"
        )
    if "C" in result:
        epoch, limit = result["C"]["seconds_per_epoch"]["median"], GRAPH_TARGETS["seconds_per_epoch"]
        lines.append(
            f"{'met' if epoch <= limit else 'MISSED'}: C's training loop {epoch:.2f} s an epoch (target ≤ {limit})"
        )
        if result["epochs"] == 20:
            wall, limit = result["C"]["wall_seconds"]["median"], GRAPH_TARGETS["wall_seconds_20_epochs"]
            lines.append(
                f"{'met' if wall <= limit else 'MISSED'}: C's whole process {wall:.1f} s for 20 epochs "
                f"(target ≤ {limit})"
            )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    console = Console()
    started = datetime.datetime.now(datetime.timezone.utc)
    host = machine()
    sides = {"A": run_tutorial, "B": run_convlens, "F": run_floor}
    if args.before_root:
        sides["P"] = run_convlens_before
    if args.graphs:
        sides["C"] = run_convlens_graphed
    if args.device == "cuda":
        sides["G"] = run_graph_floor
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="convlens-benchmark-") as scratch:
        for index in range(args.runs):
            for name, run in sides.items():
                runs[name].append(run(args, Path(scratch), index))
                console.print(f"run {index + 1}/{args.runs} {name}: {runs[name][-1]}", highlight=False)
    result: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": host,
        "epochs": args.epochs,
        "runs": args.runs,
        "device": args.device,
        "sides": list(sides),
        "limits": {
            name: getattr(args, name)
            for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "val_check_interval")
        },
        "overrides_B": list(args.overrides),
        "tutorial_threads": args.tutorial_threads,
        "convlens_root": args.convlens_root,
        "before_root": args.before_root,
        **{name: summarise(side_runs) for name, side_runs in runs.items()},
        **{f"runs_{name}": side_runs for name, side_runs in runs.items()},
    }
    result["ratios"] = {
        f"B/{name}": {key: round(result["B"][key]["median"] / result[name][key]["median"], 3) for key, _, _ in MEASURES}
        for name in sides
        if name != "B"
    }
    if "P" in sides:  # the ratio the before had against the same tutorial runs
        result["ratios"]["P/A"] = {
            key: round(result["P"][key]["median"] / result["A"][key]["median"], 3) for key, _, _ in MEASURES
        }
    result["verdicts"] = verdicts(result)
    report(result, console)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {out}")
    return result


if __name__ == "__main__":
    main()
