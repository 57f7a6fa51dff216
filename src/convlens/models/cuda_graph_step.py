"""The tutorial's step, captured once in a CUDA graph and replayed for every full batch of a chunk.

At batch 64 this network's step is about forty tiny kernels, and on a GPU the time goes to launching them. A
graph launches them all at once. Its tensors are fixed: each batch is copied into the graph's input tensors,
and the weights, gradients and momentum buffers are the same tensors at every replay. Dropout's random numbers
are drawn anew at each replay (PyTorch advances the graph's generator offset). SGD's learning rate is a number
baked into the captured kernels, so a scheduler that changes it makes the step be captured again.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from convlens.models.classifier import ConvNetClassifier

WARMUP_STEPS = 3  # eager runs on a side stream before capture, as torch.cuda.graphs asks; undone afterwards


class GraphedStep:
    def __init__(self, module: ConvNetClassifier, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor) -> None:
        self.module, self.optimizer = module, optimizer
        self.x, self.y = torch.zeros_like(x), torch.zeros_like(y)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured_lrs: list[float] = []
        self.loss = self.preds = None

    def fits(self, x: torch.Tensor) -> bool:
        """A graph has one shape: the epoch's short last batch runs eagerly."""
        return x.shape == self.x.shape

    def _lrs(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _body(self) -> None:
        self.loss, self.preds, _ = self.module.loss_and_predictions((self.x, self.y))
        self.optimizer.zero_grad(set_to_none=False)
        self.loss.backward()
        self.optimizer.step()

    def capture(self) -> None:
        """Capture after warm-up steps whose effects on the weights, optimizer state and random state are undone,
        so that capturing trains nothing. Needs the momentum buffers to exist (one eager step first)."""
        weights = [p.detach().clone() for p in self.module.parameters()]
        state = copy.deepcopy(self.optimizer.state_dict())
        rng = torch.cuda.get_rng_state()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for parameter, saved in zip(self.module.parameters(), weights, strict=True):
                parameter.copy_(saved)
            for parameter, saved in zip(self.module.parameters(), state["state"].values(), strict=True):
                self.optimizer.state[parameter]["momentum_buffer"].copy_(saved["momentum_buffer"])
        torch.cuda.set_rng_state(rng)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()
        self.captured_lrs = self._lrs()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One replayed optimizer step on this batch: (loss, predictions), valid until the next replay."""
        if self.graph is None or self._lrs() != self.captured_lrs:
            self.capture()
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.preds
