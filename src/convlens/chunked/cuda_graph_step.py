"""The tutorial's step, captured once in a CUDA graph and replayed for every full batch of a chunk.

At batch 64 this network's step is about forty tiny kernels, and on a GPU the time goes to launching them. A
graph launches them all at once. Its tensors are fixed: each batch is copied into the graph's input tensors,
and the weights, gradients and momentum buffers are the same tensors at every replay (the eager steps between
replays keep them: see ``ChunkedConvNetClassifier.optimizer_step_on``). Dropout's random numbers are drawn anew at
each replay (PyTorch advances the graph's generator offset). SGD's learning rate is a number baked into the
captured kernels, so a scheduler that changes it makes the step be captured again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from convlens.models.classifier import ConvNetClassifier

WARMUP_STEPS = 3  # eager runs on a side stream before capture, as torch.cuda.graphs asks; undone afterwards
GRAPH_DEVICE = "cuda"  # the device type whose steps are captured (tests put a CPU stand-in here)


def capture_graph(body: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """The kernels ``body`` launches, recorded (not run) into a graph whose ``replay()`` runs them."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    return graph


def optimizer_can_be_captured(optimizer: torch.optim.Optimizer) -> bool:
    """SGD with momentum: ``capture`` restores its momentum buffers, and without momentum there is no optimizer
    state to wait for, so no step would ever be captured. Other optimizers keep state the capture cannot undo."""
    return type(optimizer) is torch.optim.SGD and all(group["momentum"] > 0 for group in optimizer.param_groups)


class GraphedStep:
    def __init__(
        self, module: ConvNetClassifier, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
    ) -> None:
        self.module, self.optimizer = module, optimizer
        self.x, self.y = torch.zeros_like(x), torch.zeros_like(y)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured_lrs: list[float] = []
        self.captured_on: list[torch.Tensor] = []  # held, so their memory cannot go to other tensors
        self.loss: torch.Tensor | None = None  # the captured step's outputs, refilled at every replay
        self.preds: torch.Tensor | None = None
        self.captures = self.replays = 0  # how often the step was captured and replayed: proof that graphs ran

    def fits(self, x: torch.Tensor) -> bool:
        """A graph has one shape: the epoch's short last batch runs eagerly."""
        return x.shape == self.x.shape

    def _lrs(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _written_in_place(self) -> list[torch.Tensor]:
        """The gradients and momentum buffers the captured kernels read and write by address."""
        parameters = list(self.module.parameters())
        return [*(p.grad for p in parameters), *(self.optimizer.state[p]["momentum_buffer"] for p in parameters)]

    def _still_valid(self) -> bool:
        return (
            self.graph is not None
            and self._lrs() == self.captured_lrs
            and all(now is then for now, then in zip(self._written_in_place(), self.captured_on, strict=True))
        )

    def _body(self) -> None:
        loss, self.preds, _ = self.module.loss_and_predictions((self.x, self.y))
        self.loss = loss
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
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
        self.graph = None  # the old graph's memory goes back before the new one takes its own
        self.graph = capture_graph(self._body)
        self.captured_lrs, self.captured_on = self._lrs(), self._written_in_place()
        self.captures += 1

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One replayed optimizer step on this batch: (loss, predictions), valid until the next replay."""
        if not self._still_valid():
            self.capture()
        self.x.copy_(x)
        self.y.copy_(y)
        graph = self.graph
        assert graph is not None  # capture() above made it, unless the one there is still valid
        graph.replay()
        self.replays += 1
        assert self.loss is not None and self.preds is not None  # set when the graph was captured
        return self.loss, self.preds
