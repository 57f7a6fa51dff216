"""Test helper: CUDA graphs stood in for on the CPU, so that GraphedStep's own logic runs for real without a GPU.

Where ``convlens.chunked.cuda_graph_step`` calls CUDA, the stand-in answers as a GPU would, on the CPU:
- a captured graph records the body it was given (and does not run it, as capture runs no kernel) and runs it
  at each replay, on the same tensors; each replay draws fresh random numbers from the generator, as a CUDA
  graph's replay draws from the generator's advancing offset;
- side streams are the one CPU stream; the CUDA generator's state is the CPU generator's;
- the CPU counts as the device whose steps are captured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch

from convlens.chunked import cuda_graph_step


class StandInGraph:
    def __init__(self, body: Callable[[], None]) -> None:
        self.body = body

    def replay(self) -> None:
        self.body()


class StandInStream:
    def wait_stream(self, stream: StandInStream) -> None:
        pass


def record_graphed_steps(monkeypatch: pytest.MonkeyPatch) -> list[cuda_graph_step.GraphedStep]:
    """The list every GraphedStep made during this test is added to (their counters show what ran)."""
    made: list[cuda_graph_step.GraphedStep] = []
    original_init = cuda_graph_step.GraphedStep.__init__

    def recording_init(self, *args, **kwargs) -> None:
        original_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(cuda_graph_step.GraphedStep, "__init__", recording_init)
    return made


def use_cpu_graphs(monkeypatch: pytest.MonkeyPatch) -> list[cuda_graph_step.GraphedStep]:
    """Swap the stand-in in for this test; returns the list every GraphedStep made meanwhile is added to."""
    monkeypatch.setattr(cuda_graph_step, "GRAPH_DEVICE", "cpu")
    monkeypatch.setattr(cuda_graph_step, "capture_graph", StandInGraph)
    monkeypatch.setattr(torch.cuda, "Stream", StandInStream)
    monkeypatch.setattr(torch.cuda, "current_stream", StandInStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_rng_state", torch.get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", torch.set_rng_state)
    return record_graphed_steps(monkeypatch)
