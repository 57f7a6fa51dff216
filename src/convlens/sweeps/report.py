"""One table for a whole sweep: which settings won, by how much, and which jobs failed.

A sweep dir holds one folder per job, each with Hydra's ``.hydra/overrides.yaml`` (what the job was asked to
do) and, if it finished, ``metrics.json`` (what it measured). Jobs that differ only by ``seed`` are one
setting: their metrics are shown as mean ± std (sample standard deviation, n−1).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: no display or backend needed, e.g. on a cluster node
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from convlens.errors import ConvlensError
from convlens.faults.atomic_files import replaced_atomically
from convlens.sweeps.multirun import ERROR_FILE

METRICS = ("val/acc_best", "test/acc", "wall_seconds")  # the report's columns, from each job's metrics.json
GROUPED_OUT = ("seed",)  # overrides that repeat a setting rather than change it


@dataclass
class Job:
    name: str  # the job's folder, relative to the sweep dir (Hydra's job number)
    path: Path
    overrides: list[str]  # every key=value the job got, from .hydra/overrides.yaml
    metrics: dict[str, Any] | None  # metrics.json, or None if the job failed or has not finished
    error: str | None  # error.txt: why a job failed, when it knows

    def value(self, key: str) -> str | None:
        return dict(split_override(item) for item in self.overrides).get(key)


@dataclass
class Row:
    """One setting: the jobs that share every swept override except the seed."""

    setting: dict[str, str]
    jobs: list[Job]
    stats: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # metric → (mean, std or None)
    best: bool = False


@dataclass
class SweepReport:
    sweep_dir: Path
    metric: str  # what "best" means
    mode: str  # "max" or "min"
    jobs: list[Job]
    swept: list[str]  # override keys that differ between jobs (seed excluded), in first-seen order
    common: list[str]  # overrides every job shares
    rows: list[Row]

    @property
    def n_jobs(self) -> int:
        return len(self.jobs)

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if job.metrics is None]

    @property
    def best(self) -> Row | None:
        return next((row for row in self.rows if row.best), None)


def split_override(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key.lstrip("+~"), value


def find_jobs(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise ConvlensError(f"sweep dir {sweep_dir} does not exist; pass a multirun dir such as "
                            "logs/train/multiruns/<date>_<time>_<pid>")
    if (sweep_dir / ".hydra").is_dir():  # a run's own folder: a multirun's .hydra/ folders are one level down
        raise ConvlensError(f"{sweep_dir} is a single run's folder, not a multirun; pass a multirun dir such as "
                            "logs/train/multiruns/<date>_<time>_<pid>")
    jobs = []
    for overrides_file in sweep_dir.rglob(".hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        metrics_file = job_dir / "metrics.json"
        error_file = job_dir / ERROR_FILE
        jobs.append(Job(
            name=str(job_dir.relative_to(sweep_dir)),
            path=job_dir,
            overrides=[str(item) for item in OmegaConf.load(overrides_file)],
            metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
            error=error_file.read_text().strip() if error_file.is_file() else None,
        ))
    if not jobs:
        raise ConvlensError(f"{sweep_dir} holds no jobs (no <job>/.hydra/overrides.yaml); pass a multirun dir "
                            "such as logs/train/multiruns/<date>_<time>_<pid>")
    return sorted(jobs, key=lambda job: (len(job.name), job.name))  # 2 before 10


def swept_and_common(jobs: list[Job]) -> tuple[list[str], list[str]]:
    """Keys whose value differs between jobs; and the key=value items every job shares."""
    keys: list[str] = []
    for job in jobs:
        keys += [key for key, _ in map(split_override, job.overrides) if key not in keys]
    differing = [key for key in keys if len({job.value(key) for job in jobs}) > 1]
    common = [f"{key}={jobs[0].value(key)}" for key in keys if key not in differing]
    return [key for key in differing if key not in GROUPED_OUT], common


def summarise(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def group_rows(jobs: list[Job], swept: list[str], metric: str, mode: str) -> list[Row]:
    rows: dict[tuple, Row] = {}
    for job in jobs:
        setting = {key: job.value(key) for key in swept}
        rows.setdefault(tuple(setting.items()), Row(setting=setting, jobs=[])).jobs.append(job)
    for row in rows.values():
        finished = [job.metrics for job in row.jobs if job.metrics is not None]
        for key in {*METRICS, metric}:
            values = [float(m[key]) for m in finished if m.get(key) is not None]
            if values:
                row.stats[key] = summarise(values)
    scored = [row for row in rows.values() if metric in row.stats]
    if scored:
        pick = max if mode == "max" else min
        pick(scored, key=lambda row: row.stats[metric][0]).best = True
    return list(rows.values())


def build_report(sweep_dir: Path, metric: str = "val/acc_best", mode: str = "max") -> SweepReport:
    if mode not in ("max", "min"):
        raise ConvlensError(f"mode={mode} is neither max nor min; use max for accuracies, min for errors and losses")
    jobs = find_jobs(Path(sweep_dir))
    measured = sorted({key for job in jobs if job.metrics for key, value in job.metrics.items()
                       if isinstance(value, (int, float)) and not isinstance(value, bool)})
    if measured and metric not in measured:
        raise ConvlensError(f"--metric {metric} is in no job's metrics.json; the metrics there are "
                            f"{', '.join(measured)}")
    swept, common = swept_and_common(jobs)
    return SweepReport(Path(sweep_dir), metric, mode, jobs, swept, common, group_rows(jobs, swept, metric, mode))


def short(value: str | None) -> str:
    """Optuna's 0.052875761733448184 as 0.05288: enough digits to tell trials apart."""
    if value is None:
        return "—"
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.4g}"


def percent(key: str) -> bool:
    return key.endswith("acc") or key.endswith("acc_best")


def cell(row: Row, key: str) -> str:
    if key not in row.stats:
        return "—"
    mean, std = row.stats[key]
    scale, digits = (100, 2) if percent(key) else (1, 0)
    text = f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def label(key: str) -> str:
    """model.optimizer.lr as lr: the table stays readable; report.csv and the common overrides keep full keys."""
    return key.replace("/", ".").rsplit(".", 1)[-1]


def columns(report: SweepReport) -> list[str]:
    metrics = list(dict.fromkeys([report.metric, *METRICS]))
    swept = [label(key) for key in report.swept]
    if len(set(swept)) < len(swept):  # two keys end alike: keep them whole
        swept = list(report.swept)
    return [*swept, "n", *(f"{key} %" if percent(key) else key for key in metrics), "jobs", "best"]


def table_rows(report: SweepReport) -> list[list[str]]:
    metrics = list(dict.fromkeys([report.metric, *METRICS]))
    return [[*(short(row.setting[key]) for key in report.swept), str(len(row.jobs)),
             *(cell(row, key) for key in metrics), ",".join(job.name for job in row.jobs),
             "★" if row.best else ""] for row in report.rows]


def failure_lines(report: SweepReport) -> list[str]:
    return [f"job {job.name} ({' '.join(job.overrides) or 'no overrides'}): "
            f"{job.error or f'no metrics.json (still running, killed, or crashed; see {job.path})'}"
            for job in report.failed]


def write_markdown(report: SweepReport, path: Path) -> None:
    head = columns(report)
    lines = [f"# Sweep report: {report.sweep_dir}", "",
             f"{report.n_jobs} jobs, {len(report.failed)} failed or missing. Best ({report.mode} of mean "
             f"`{report.metric}`) is marked ★. Jobs that differ only by seed are one row: mean ± std (n−1).", ""]
    if report.common:
        lines += [f"Common overrides: `{' '.join(report.common)}`", ""]
    if report.swept:
        lines += ["Swept: " + ", ".join(f"`{key}`" for key in report.swept), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    if report.failed:
        lines += ["", "## Failed or missing jobs", "", *(f"- {line}" for line in failure_lines(report))]
    path.write_text("\n".join(lines) + "\n")


def write_csv(report: SweepReport, path: Path) -> None:
    """Raw numbers (fractions, full precision), one row per setting, for a spreadsheet or pandas."""
    metrics = list(dict.fromkeys([report.metric, *METRICS]))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*report.swept, "n", *(f"{key}_{part}" for key in metrics for part in ("mean", "std")),
                         "jobs", "best"])
        for row in report.rows:
            stats = [value for key in metrics for value in row.stats.get(key, (None, None))]
            writer.writerow([*(row.setting[key] for key in report.swept), len(row.jobs),
                             *("" if value is None else value for value in stats),
                             " ".join(job.name for job in row.jobs), int(row.best)])


def write_plot(report: SweepReport, path: Path) -> None:
    """The metric of every finished job against each swept parameter (numbers on a log axis if they span >10x)."""
    finished = [job for job in report.jobs if job.metrics and job.metrics.get(report.metric) is not None]
    keys = report.swept or ["job"]
    best = report.best.jobs if report.best else []  # drawn in red
    figure = Figure(figsize=(3.6 * len(keys), 3.2))
    axes = figure.subplots(1, len(keys), squeeze=False, sharey=True)
    for ax, key in zip(axes[0], keys):
        raw = [job.name if key == "job" else job.value(key) for job in finished]
        y = [100 * job.metrics[report.metric] if percent(report.metric) else job.metrics[report.metric]
             for job in finished]
        numbers = [as_number(value) for value in raw]
        if numbers and all(number is not None for number in numbers):
            x = numbers
            if min(numbers) > 0 and max(numbers) / min(numbers) > 10:
                ax.set_xscale("log")
        else:
            labels = sorted({str(value) for value in raw})
            x = [labels.index(str(value)) for value in raw]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(x, y, c=["tab:red" if job in best else "tab:blue" for job in finished], alpha=0.8)
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{report.metric} (%)" if percent(report.metric) else report.metric)
    figure.suptitle(f"{report.metric}: {len(finished)} of {report.n_jobs} jobs", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")


def as_number(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def write_report(report: SweepReport) -> dict[str, Path]:
    """report.md, report.csv and report.png in the sweep dir."""
    paths = {suffix: report.sweep_dir / f"report.{suffix}" for suffix in ("md", "csv", "png")}
    for write, suffix in ((write_markdown, "md"), (write_csv, "csv"), (write_plot, "png")):
        with replaced_atomically(paths[suffix]) as temporary:  # a crash never leaves half a report
            write(report, temporary)
    return paths


def print_report(report: SweepReport, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: no reason to squeeze the table into 80 columns
            console = Console(width=200)
    table = Table(title=f"{report.sweep_dir}: {report.n_jobs} jobs, best by {report.mode} {report.metric} ★")
    for index, name in enumerate(columns(report)):
        table.add_column(name, justify="left" if index < len(report.swept) else "right")
    for cells, row in zip(table_rows(report), report.rows):
        table.add_row(*cells, style="bold green" if row.best else None)
    console.print(table)
    if report.common:
        console.print(f"common overrides: {' '.join(report.common)}", highlight=False)
    for line in failure_lines(report):
        console.print(f"[red]failed:[/red] {line}", highlight=False, soft_wrap=True)
    console.print(f"report: {report.sweep_dir}/report.md, report.csv, report.png")
