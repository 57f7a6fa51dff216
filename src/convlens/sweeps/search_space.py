"""A search's parameters, written in Hydra's override syntax, as Optuna distributions.

The syntax and its meaning are hydra-optuna-sweeper 1.3.0's, so existing configs and commands keep their search:
``choice(a, b)`` → categorical; ``range(start, stop, step)`` → int (or float with a step) from start to stop,
both ends included (``shuffle(range(...))`` → categorical of its values); ``interval(low, high)`` → uniform
(int when both ends are ints); ``tag(log, interval(low, high))`` → the same on a log scale; a plain value is
fixed: passed to every trial and not searched. Optuna 3 merged the old distribution classes into
``FloatDistribution`` and ``IntDistribution``, which take the same bounds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from convlens.errors import ConvlensError


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna searches, and the overrides every trial gets as they are."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]

    def trial_overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides: its suggested values, then the fixed ones (as the old sweeper wrote them)."""
        return [f"{name}={value}" for name, value in {**params, **self.fixed}.items()]


def categorical(override: Override) -> CategoricalDistribution:
    choices: list[Any] = list(override.sweep_iterator(transformer=Transformer.encode))  # numbers stay numbers
    return CategoricalDistribution(choices)


def range_distribution(override: Override, sweep: RangeSweep) -> BaseDistribution:
    if sweep.shuffle:
        return categorical(override)
    start, stop, step = sweep.start, sweep.stop, sweep.step
    assert start is not None and stop is not None  # Hydra's grammar has no range without both ends
    if any(isinstance(value, float) for value in (start, stop, step)):
        return FloatDistribution(start, stop, step=step)
    return IntDistribution(int(start), int(stop), step=int(step))


def interval_distribution(sweep: IntervalSweep) -> BaseDistribution:
    log = "log" in sweep.tags
    start, end = sweep.start, sweep.end
    assert start is not None and end is not None  # Hydra's grammar has no interval without both ends
    if isinstance(start, int) and isinstance(end, int):
        return IntDistribution(start, end, log=log)
    return FloatDistribution(start, end, log=log)


def distribution(override: Override) -> BaseDistribution | str:
    """The distribution an override asks for, or (not a sweep) its value as written."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return categorical(override)
    if isinstance(sweep, RangeSweep):
        return range_distribution(override, sweep)
    if isinstance(sweep, IntervalSweep):
        return interval_distribution(sweep)
    raise ConvlensError(
        f"{override.input_line} is not a search an Optuna search can run; use choice(...), "
        "range(...), interval(...) or tag(log, interval(...))"
    )


def parse_override(line: str) -> tuple[str, BaseDistribution | str]:
    """(key, distribution or fixed value) of one override line."""
    try:
        override = OverridesParser.create().parse_override(line)
        return override.get_key_element(), distribution(override)
    except (HydraException, ValueError) as error:
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConvlensError(
            f"cannot read the search parameter {line!r} ({why}); write e.g. "
            "'model.optimizer.lr=tag(log, interval(0.001, 0.2))' or 'data.batch_size=choice(32, 64)'"
        ) from error


def search_space(lines: Iterable[str]) -> SearchSpace:
    """Config params first, then command-line overrides: a later line for the same key replaces an earlier one."""
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for line in lines:
        key, parsed = parse_override(line)
        distributions.pop(key, None)
        fixed.pop(key, None)
        if isinstance(parsed, BaseDistribution):
            distributions[key] = parsed
        else:
            fixed[key] = parsed
    return SearchSpace(distributions, fixed)


def grid_choices(space: SearchSpace) -> dict[str, list[Any]]:
    """The grid sampler's values for each parameter; an interval has no finite grid."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.step is not None and not dist.log:
            count = int((dist.high - dist.low) // dist.step)  # as hydra-optuna-sweeper: range's stop is left out
            grid[name] = [dist.low + index * dist.step for index in range(count)]
        else:
            raise ConvlensError(
                f"hydra/sweeper/sampler=grid needs a finite set of values, but {name} is an interval; "
                "write it as choice(...) or range(...)"
            )
    return grid
