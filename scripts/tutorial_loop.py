"""The tutorial's hand-written training loop, kept as the tutorial has it: the benchmark's baseline (A).

    python scripts/tutorial_loop.py --epochs 3 --out a.json

torchvision's MNIST with a per-item ``ToTensor``, a DataLoader of batch 64 shuffled, validation on test
images 0..4999 (``SubsetRandomSampler``) every 100 batches, SGD lr 0.001 momentum 0.9, then a test on
images 5000..9999. Deliberately plain PyTorch and independent of convlens, so the comparison is honest.
It writes its own training-loop seconds per epoch and its test accuracy as JSON.
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, SubsetRandomSampler
from torchvision import datasets, transforms


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 8, 5, padding=2)
        self.fc1 = nn.Linear(8 * 7 * 7, 512)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))  # (N, 4, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))  # (N, 8, 7, 7)
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))  # (N, 512)
        return F.log_softmax(self.fc2(x), dim=1)  # (N, 10)


def accuracy(model: nn.Module, loader: DataLoader, limit: int | None, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for i, (images, labels) in enumerate(loader):
            if limit is not None and i >= limit:
                break
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(dim=1) == labels).sum().item()
            total += len(labels)
    model.train()
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-train-batches", type=int, default=None, help="training batches per epoch")
    parser.add_argument("--limit-val-batches", type=int, default=None, help="batches per validation")
    parser.add_argument("--limit-test-batches", type=int, default=None, help="batches of the final test")
    parser.add_argument("--val-check-interval", type=int, default=100, help="validate every N training batches")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the model there, each batch copied to it")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_set = datasets.MNIST(args.data_dir, train=True, transform=transforms.ToTensor())
    test_set = datasets.MNIST(args.data_dir, train=False, transform=transforms.ToTensor())
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    val_loader = DataLoader(test_set, batch_size=64, sampler=SubsetRandomSampler(range(0, 5000)))
    test_loader = DataLoader(test_set, batch_size=64, sampler=SubsetRandomSampler(range(5000, 10_000)))

    device = torch.device(args.device)
    model = ConvNet().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

    steps = 0
    loop_started = time.perf_counter()
    for epoch in range(args.epochs):
        running_loss = 0.0
        for i, (images, labels) in enumerate(train_loader):
            if args.limit_train_batches is not None and i >= args.limit_train_batches:
                break
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(model(images), labels)
            loss.backward()
            optimizer.step()
            steps += 1
            running_loss += loss.item()
            if (i + 1) % args.val_check_interval == 0:
                val_acc = accuracy(model, val_loader, args.limit_val_batches, device)
                print(
                    f"epoch {epoch + 1} batch {i + 1}: loss {running_loss / args.val_check_interval:.3f}, "
                    f"val acc {val_acc:.4f}",
                    flush=True,
                )
                running_loss = 0.0
    loop_seconds = time.perf_counter() - loop_started

    result = {
        "epochs": args.epochs,
        "steps": steps,
        "loop_seconds": round(loop_seconds, 3),
        "seconds_per_epoch": round(loop_seconds / args.epochs, 3),
        "test_acc": round(accuracy(model, test_loader, args.limit_test_batches, device), 6),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
