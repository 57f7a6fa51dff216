"""The floor for the tutorial's protocol: the same ConvNet and steps as a bare loop over data already in memory.

    python scripts/floor_loop.py --epochs 3 --out floor.json [--device cuda] [--graph]

Batch 64, SGD lr 0.001 momentum 0.9, validation on test images 0..4999 (batches of 500) every 100 training
batches, a test on 5000..9999: as ``tutorial_loop.py``, but every image is decoded once into one tensor on the
device and there is no framework, DataLoader or logging around the loop. ``--graph`` (CUDA only) captures the
whole step (forward, backward, SGD) once in a CUDA graph and replays it; a graph has one shape, so the epoch's
last, partial batch is skipped there. The benchmark (``scripts/benchmark.py``) runs it beside A and B.
Run from anywhere: Python puts this script's folder, and so ``tutorial_loop``, on the import path.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tutorial_loop import ConvNet  # the tutorial's network, exactly as side A trains it

BATCH = 64
VAL, TEST = range(0, 5000), range(5000, 10_000)


def idx_file(path: Path, header: int) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8, offset=header)


def load(raw: Path, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = idx_file(raw / f"{split}-images-idx3-ubyte", 16).reshape(-1, 1, 28, 28)
    labels = idx_file(raw / f"{split}-labels-idx1-ubyte", 8).astype(np.int64)
    return torch.tensor(images, device=device).float().div_(255), torch.tensor(labels, device=device)


def correct(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, indices: range, limit: int | None
) -> torch.Tensor:
    model.eval()
    right = torch.zeros((), dtype=torch.long, device=images.device)
    with torch.inference_mode():
        for number, start in enumerate(range(indices.start, indices.stop, 500)):
            if limit is not None and number >= limit:
                break
            right += (model(images[start : start + 500]).argmax(1) == labels[start : start + 500]).sum()
    model.train()
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--graph", action="store_true", help="replay the step as a CUDA graph (CUDA only)")
    parser.add_argument("--limit-train-batches", type=int, default=None, help="training batches per epoch")
    parser.add_argument("--limit-val-batches", type=int, default=None, help="batches of 500 per validation")
    parser.add_argument("--limit-test-batches", type=int, default=None, help="batches of 500 in the test")
    parser.add_argument("--val-check-interval", type=int, default=100, help="validate every N training batches")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.graph and device.type != "cuda":
        parser.error("--graph needs --device cuda")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    torch.manual_seed(args.seed)
    raw = Path(args.data_dir) / "MNIST" / "raw"
    train_x, train_y = load(raw, "train", device)
    test_x, test_y = load(raw, "t10k", device)
    model = ConvNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.nll_loss(model(x), y)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        return loss

    static_x = torch.zeros(BATCH, 1, 28, 28, device=device)
    static_y = torch.zeros(BATCH, dtype=torch.long, device=device)
    if args.graph:  # warm-up steps create the momentum buffers, then the state is put back as it was
        start = {key: value.clone() for key, value in model.state_dict().items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step(static_x, static_y)
        torch.cuda.current_stream().wait_stream(side)
        model.load_state_dict(start)
        for state in optimizer.state.values():
            state["momentum_buffer"].zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step(static_x, static_y)

    count = len(train_y)
    batches = -(-count // BATCH)
    if args.limit_train_batches is not None:
        batches = min(batches, args.limit_train_batches)
    steps = 0
    sync()
    started = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(count, device=device)
        for number in range(batches):
            index = order[number * BATCH : (number + 1) * BATCH]
            if args.graph:
                if len(index) < BATCH:
                    continue
                static_x.copy_(train_x[index])
                static_y.copy_(train_y[index])
                graph.replay()
            else:
                step(train_x[index], train_y[index])
            steps += 1
            if (number + 1) % args.val_check_interval == 0:
                correct(model, test_x, test_y, VAL, args.limit_val_batches)
    sync()
    loop_seconds = time.perf_counter() - started
    tested = min(len(TEST), 500 * args.limit_test_batches) if args.limit_test_batches is not None else len(TEST)
    test_acc = correct(model, test_x, test_y, TEST, args.limit_test_batches).item() / tested
    result = {
        "epochs": args.epochs,
        "steps": steps,
        "graph": args.graph,
        "device": str(device),
        "loop_seconds": round(loop_seconds, 3),
        "seconds_per_epoch": round(loop_seconds / args.epochs, 3),
        "test_acc": round(test_acc, 6),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
