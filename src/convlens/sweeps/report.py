"""One table for a whole sweep: which settings won, by how much, and what became of every job.

A sweep dir holds one folder per job, each with Hydra's ``.hydra/overrides.yaml`` (what the job was asked to
do) and, if it finished, ``metrics.json`` (what it measured, and whether it completed or was pruned). Jobs that
differ only by ``seed`` are one setting: their metrics are shown as mean ± std (sample standard deviation, n−1),
over the jobs that completed. Every job's state is listed too: complete, pruned at step N, failed with its
reason (``error.txt``), interrupted, or never started (a grid stopped by Ctrl-C, expanded again from the sweep's
``multirun.yaml``). For a search, the Optuna study adds its trials' states and each parameter's importance.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure  # no pyplot: no display or backend needed, e.g. on a cluster node
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from convlens.errors import ConvlensError
from convlens.faults.atomic_files import replaced_atomically
from convlens.sweeps.multirun import ERROR_FILE
from convlens.sweeps.sweep_study import grid_jobs, is_grid, load_study, multirun_config, study_location

METRICS = ("val/acc_best", "test/acc", "wall_seconds")  # the report's columns, from each job's metrics.json
GROUPED_OUT = ("seed",)  # overrides that repeat a setting rather than change it
MIN_COMPLETE_FOR_IMPORTANCE = 4  # fewer completed trials say nothing about which parameter matters
MAX_DIGITS = 4  # decimals shown for a metric that is not a percentage, at most (report.csv keeps them all)

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
INTERRUPTED, NEVER_STARTED, UNFINISHED = "interrupted", "never started", "unfinished"
STATES = (COMPLETE, PRUNED, FAILED, INTERRUPTED, UNFINISHED, NEVER_STARTED)  # the order they are listed in
TRIAL_STATES = {
    TrialState.COMPLETE: COMPLETE,
    TrialState.PRUNED: PRUNED,
    TrialState.FAIL: FAILED,
    TrialState.WAITING: NEVER_STARTED,
}  # RUNNING: interrupted or unfinished, as a folder would say


@dataclass
class Job:
    name: str  # the job's folder, relative to the sweep dir (Hydra's job number; a search's trial number)
    path: Path
    overrides: list[str]  # every key=value the job got, from .hydra/overrides.yaml
    metrics: dict[str, Any] | None  # metrics.json, or None if the job failed or has not finished
    error: str | None  # error.txt: why a job failed, when it knows
    started: bool = True  # False: a grid job the sweep never reached (no folder)
    interrupted: bool = False  # the sweep was stopped (Ctrl-C) while this job ran
    trial: FrozenTrial | None = None  # a search's Optuna trial of the same number

    def value(self, key: str) -> str | None:
        return dict(split_override(item) for item in self.overrides).get(key)

    @property
    def state(self) -> str:
        if self.error is not None:
            return FAILED
        if self.metrics is not None:
            status = self.metrics.get("status")  # written by train.py: complete | pruned | interrupted
            return status if status in (PRUNED, INTERRUPTED) else COMPLETE  # none: written before statuses were
        if self.trial is not None and self.trial.state in TRIAL_STATES:
            return TRIAL_STATES[self.trial.state]
        if not self.started:
            return NEVER_STARTED
        return INTERRUPTED if self.interrupted else UNFINISHED

    def describe(self) -> str:
        """The state in words a reader can act on."""
        state = self.state
        if state == PRUNED:
            step = (self.metrics or {}).get("pruned_at_step")
            step = step if step is not None or self.trial is None else self.trial.last_step
            return f"pruned at step {step}" if step is not None else "pruned"
        if state == FAILED:
            reason = self.error or (self.trial.system_attrs.get("fail_reason") if self.trial else None)
            return f"failed: {reason or f'no error.txt; see {self.path}'}"
        if state == INTERRUPTED:
            last = self.path / "checkpoints" / "last.ckpt"
            return f"interrupted; its {last} resumes it" if last.is_file() else "interrupted"
        if state == UNFINISHED:
            return f"no metrics.json (still running, killed, or crashed; see {self.path})"
        return state


@dataclass
class Row:
    """One setting: the jobs that share every swept override except the seed."""

    setting: dict[str, str | None]
    jobs: list[Job]
    stats: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # metric → (mean, std or None)
    best: bool = False

    @property
    def n_complete(self) -> int:
        """The n of the mean ± std: its completed jobs."""
        return sum(job.state == COMPLETE for job in self.jobs)


@dataclass
class SweepReport:
    sweep_dir: Path
    metric: str  # what "best" means
    mode: str  # "max" or "min"
    jobs: list[Job]
    swept: list[str]  # override keys that differ between jobs (seed excluded), in first-seen order
    common: list[str]  # overrides every job shares
    rows: list[Row]
    study: optuna.Study | None = None  # a search's study, opened from the storage the sweep used
    storage: str | None = None  # that storage's URL
    importances: dict[str, float] | None = None  # parameter → importance (Optuna's default evaluator), summing to 1
    importance_note: str = ""  # why there are no importances
    trials_not_started: int = 0  # a search's n_trials not yet asked for
    title: str = "Sweep report"  # report.md's heading, before the folder it describes

    @property
    def n_jobs(self) -> int:
        return len(self.jobs)

    @property
    def failed(self) -> list[Job]:
        """Jobs that ended without a result the sweep asked for: failed, or gone without a word."""
        return [job for job in self.jobs if job.state in (FAILED, UNFINISHED)]

    def in_state(self, *states: str) -> list[Job]:
        return [job for job in self.jobs if job.state in states]

    def counts(self) -> str:
        """``3 complete, 1 pruned, 2 never started``: every state that occurs, in STATES order."""
        states = [job.state for job in self.jobs]
        parts = [f"{states.count(state)} {state}" for state in STATES if state in states]
        parts += [f"{self.trials_not_started} trials not yet started"] if self.trials_not_started else []
        return ", ".join(parts)

    @property
    def best(self) -> Row | None:
        return next((row for row in self.rows if row.best), None)


def split_override(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key.lstrip("+~"), value


def read_results(job_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A job's ``metrics.json`` and ``error.txt``, each None where the job did not write it."""
    metrics_file, error_file = job_dir / "metrics.json", job_dir / ERROR_FILE
    return (
        json.loads(metrics_file.read_text()) if metrics_file.is_file() else None,
        error_file.read_text().strip() if error_file.is_file() else None,
    )


def read_job(sweep_dir: Path, job_dir: Path) -> Job:
    return Job(
        str(job_dir.relative_to(sweep_dir)),
        job_dir,
        [str(item) for item in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")],
        *read_results(job_dir),
    )


def find_jobs(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise ConvlensError(
            f"sweep dir {sweep_dir} does not exist; pass a multirun dir such as "
            "logs/train/multiruns/<date>_<time>_<pid>"
        )
    if (sweep_dir / ".hydra").is_dir():  # a run's own folder: a multirun's .hydra/ folders are one level down
        raise ConvlensError(
            f"{sweep_dir} is a single run's folder, not a multirun; pass a multirun dir such as "
            "logs/train/multiruns/<date>_<time>_<pid>"
        )
    return [read_job(sweep_dir, path.parent.parent) for path in sweep_dir.rglob(".hydra/overrides.yaml")]


def job_order(job: Job) -> tuple[int, str]:
    return len(job.name), job.name  # 2 before 10


def add_grid_jobs_never_started(jobs: list[Job], sweep_dir: Path, cfg: DictConfig) -> list[Job]:
    """A grid stopped early: the jobs it never reached, numbered as Hydra's basic sweeper numbers them."""
    seen = {job.name for job in jobs}
    return jobs + [
        Job(str(number), sweep_dir / str(number), list(overrides), None, None, started=False)
        for number, overrides in enumerate(grid_jobs(cfg))
        if str(number) not in seen
    ]


def add_trials(jobs: list[Job], sweep_dir: Path, study: optuna.Study) -> list[Job]:
    """Each trial joins the folder of its number; a trial with no folder (never started, failed first) is listed
    too, with the parameters the study gave it."""
    by_name = {job.name: job for job in jobs}
    for trial in study.get_trials(deepcopy=False):
        name = str(trial.number)
        if name in by_name:
            by_name[name].trial = trial
        else:
            overrides = [f"{key}={value}" for key, value in trial.params.items()]
            jobs.append(
                Job(
                    name,
                    sweep_dir / name,
                    overrides,
                    None,
                    None,
                    started=trial.state != TrialState.WAITING,
                    trial=trial,
                )
            )
    return jobs


def param_importances(study: optuna.Study) -> tuple[dict[str, float] | None, str]:
    """Optuna's importance evaluator over the completed trials, or why not."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_COMPLETE_FOR_IMPORTANCE:
        return None, (
            f"too few trials for parameter importances: {len(complete)} complete, {MIN_COMPLETE_FOR_IMPORTANCE} needed"
        )
    try:
        return optuna.importance.get_param_importances(study), ""
    except (ValueError, RuntimeError) as error:  # e.g. no parameter that every completed trial has
        return None, f"no parameter importances: {error}"


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
    """One row per setting; its numbers come from its completed jobs (a pruned job's are from part of a run)."""
    rows: dict[tuple, Row] = {}
    for job in jobs:
        setting = {key: job.value(key) for key in swept}
        rows.setdefault(tuple(setting.items()), Row(setting=setting, jobs=[])).jobs.append(job)
    for row in rows.values():
        finished = [job.metrics for job in row.jobs if job.metrics is not None and job.state == COMPLETE]
        for key in {*METRICS, metric}:
            values = [float(m[key]) for m in finished if m.get(key) is not None]
            if values:
                row.stats[key] = summarise(values)
    scored = [row for row in rows.values() if metric in row.stats]
    if scored:
        pick = max if mode == "max" else min
        pick(scored, key=lambda row: row.stats[metric][0]).best = True
    return list(rows.values())


def check_metric_and_mode(jobs: list[Job], metric: str, mode: str) -> None:
    if mode not in ("max", "min"):
        raise ConvlensError(f"mode={mode} is neither max nor min; use max for accuracies, min for errors and losses")
    measured = sorted(
        {
            key
            for job in jobs
            if job.metrics
            for key, value in job.metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
    )
    if measured and metric not in measured:
        raise ConvlensError(
            f"--metric {metric} is in no job's metrics.json; the metrics there are {', '.join(measured)}"
        )


def build_report(
    sweep_dir: Path,
    metric: str = "val/acc_best",
    mode: str | None = None,
    *,
    interrupted: bool = False,
    config: DictConfig | None = None,
) -> SweepReport:
    """The report of ``sweep_dir``. ``mode`` None: the study's direction for a search, else max.
    ``interrupted``: the sweep was stopped, so a started job without a result was interrupted, not lost.
    ``config``: the sweep's config when it is at hand (else its saved multirun.yaml is read)."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    cfg = config if config is not None else multirun_config(sweep_dir)
    if is_grid(cfg):
        jobs = add_grid_jobs_never_started(jobs, sweep_dir, cfg)
    location = study_location(sweep_dir, cfg)
    study = load_study(location) if location is not None else None
    if study is not None:
        jobs = add_trials(jobs, sweep_dir, study)
    if not jobs:
        raise ConvlensError(
            f"{sweep_dir} holds no jobs (no <job>/.hydra/overrides.yaml); pass a multirun dir "
            "such as logs/train/multiruns/<date>_<time>_<pid>"
        )
    if mode is None:
        mode = "min" if study is not None and study.direction == optuna.study.StudyDirection.MINIMIZE else "max"
    for job in jobs:
        job.interrupted = interrupted
    jobs.sort(key=job_order)
    check_metric_and_mode(jobs, metric, mode)
    swept, common = swept_and_common(jobs)
    report = SweepReport(
        sweep_dir,
        metric,
        mode,
        jobs,
        swept,
        common,
        group_rows(jobs, swept, metric, mode),
        study,
        None if location is None else location.storage,
    )
    if study is not None:
        report.importances, report.importance_note = param_importances(study)
        n_trials = OmegaConf.select(cfg, "hydra.sweeper.n_trials", default=None) if cfg is not None else None
        report.trials_not_started = max(0, int(n_trials) - len(study.trials)) if n_trials is not None else 0
    return report


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


def decimals(number: float) -> int:
    """The decimals ``number`` has, float noise aside: 12.45 → 2, 12.449998 (float32's 12.45) → 2, 69.8 → 1."""
    return next(
        (
            digits
            for digits in range(MAX_DIGITS)
            if math.isclose(round(number, digits), number, rel_tol=1e-6, abs_tol=1e-9)
        ),
        MAX_DIGITS,
    )


def metric_digits(report: SweepReport, key: str) -> int:
    """Percentages show 2 decimals; any other metric the most its jobs' values have (12.45 stays 12.45)."""
    if percent(key):
        return 2
    values = [job.metrics[key] for job in report.jobs if job.metrics and isinstance(job.metrics.get(key), float)]
    return min(MAX_DIGITS, max((decimals(value) for value in values), default=0))


def formatted(value: float, key: str, digits: int) -> str:
    return f"{value * (100 if percent(key) else 1):.{digits}f}"


def cell(row: Row, key: str, digits: int) -> str:
    if key not in row.stats:
        return "—"
    mean, std = row.stats[key]
    text = formatted(mean, key, digits)
    return text if std is None else f"{text} ± {formatted(std, key, digits)}"


def label(key: str) -> str:
    """model.optimizer.lr as lr: the table stays readable; report.csv and the common overrides keep full keys."""
    return key.replace("/", ".").rsplit(".", 1)[-1]


def swept_labels(report: SweepReport) -> list[str]:
    swept = [label(key) for key in report.swept]
    return list(report.swept) if len(set(swept)) < len(swept) else swept  # two keys end alike: keep them whole


def metric_keys(report: SweepReport) -> list[str]:
    return list(dict.fromkeys([report.metric, *METRICS]))


def columns(report: SweepReport) -> list[str]:
    metrics = [f"{key} %" if percent(key) else key for key in metric_keys(report)]
    return [*swept_labels(report), "n", *metrics, "jobs", "best"]


def table_rows(report: SweepReport) -> list[list[str]]:
    digits = {key: metric_digits(report, key) for key in metric_keys(report)}
    return [
        [
            *(short(row.setting[key]) for key in report.swept),
            str(row.n_complete),
            *(cell(row, key, digits[key]) for key in metric_keys(report)),
            ",".join(job.name for job in row.jobs),
            "★" if row.best else "",
        ]
        for row in report.rows
    ]


def job_value(report: SweepReport, job: Job) -> str:
    value = (job.metrics or {}).get(report.metric)
    return "—" if value is None else formatted(float(value), report.metric, metric_digits(report, report.metric))


def job_line(report: SweepReport, job: Job) -> str:
    """``job 2 (lr=0.05 seed=1): never started``: what sets the job apart (the common overrides are said once)."""
    own = [
        item for item in job.overrides if f"{split_override(item)[0]}={split_override(item)[1]}" not in report.common
    ]
    return f"job {job.name} ({' '.join(own or job.overrides) or 'no overrides'}): {job.describe()}"


def failure_lines(report: SweepReport) -> list[str]:
    return [job_line(report, job) for job in report.failed]


def best_trial_line(report: SweepReport) -> str | None:
    if report.study is None or not report.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    trial = report.study.best_trial
    params = " ".join(f"{key}={short(str(value))}" for key, value in trial.params.items())
    return f"best trial of study {report.study.study_name}: {trial.number}, value {trial.value:.6g}, {params}"


def importance_lines(report: SweepReport) -> list[str]:
    if report.study is None:
        return []
    if report.importances is None:
        return [report.importance_note]
    return [f"{key}: {value:.3f}" for key, value in report.importances.items()]


def write_markdown(report: SweepReport, path: Path) -> None:
    head = columns(report)
    lines = [
        f"# {report.title}: {report.sweep_dir}",
        "",
        f"{report.n_jobs} jobs: {report.counts()}. Best ({report.mode} of mean `{report.metric}` over "
        "completed jobs) is marked ★. Jobs that differ only by seed are one row: mean ± std (n−1) of its n "
        "completed jobs.",
        "",
    ]
    if report.common:
        lines += [f"Common overrides: `{' '.join(report.common)}`", ""]
    if report.swept:
        lines += ["Swept: " + ", ".join(f"`{key}`" for key in report.swept), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    if best_trial_line(report):
        lines += ["", f"The {best_trial_line(report)}"]
    repeats = [key for key in GROUPED_OUT if len({job.value(key) for job in report.jobs}) > 1]  # e.g. the seed
    keys, labels = [*report.swept, *repeats], [*swept_labels(report), *repeats]
    lines += [
        "",
        "## Every job",
        "",
        f"| job | {' | '.join(labels)} | state | {report.metric} |",
        "|" + " --- |" * (len(keys) + 3),
    ]
    lines += [
        f"| {job.name} | {' | '.join(short(job.value(key)) for key in keys)} | "
        f"{job.describe().replace('|', '/')} | {job_value(report, job)} |"
        for job in report.jobs
    ]
    if report.study is not None:
        lines += ["", "## Parameter importance", ""]
        lines += [f"- {line}" for line in importance_lines(report)] if report.importances else importance_lines(report)
    if report.failed:
        lines += ["", "## Failed or missing jobs", "", *(f"- {line}" for line in failure_lines(report))]
    path.write_text("\n".join(lines) + "\n")


def write_csv(report: SweepReport, path: Path) -> None:
    """Raw numbers (fractions, full precision), one row per setting, for a spreadsheet or pandas."""
    metrics = metric_keys(report)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                *report.swept,
                "n",
                *(f"{key}_{part}" for key in metrics for part in ("mean", "std")),
                "jobs",
                "states",
                "best",
            ]
        )
        for row in report.rows:
            stats = [value for key in metrics for value in row.stats.get(key, (None, None))]
            writer.writerow(
                [
                    *(row.setting[key] for key in report.swept),
                    row.n_complete,
                    *("" if value is None else value for value in stats),
                    " ".join(job.name for job in row.jobs),
                    " ".join(job.state for job in row.jobs),
                    int(row.best),
                ]
            )


STATE_STYLE = {
    COMPLETE: ("tab:blue", "o"),
    PRUNED: ("tab:orange", "v"),
    FAILED: ("tab:red", "X"),
    INTERRUPTED: ("tab:purple", "s"),
    UNFINISHED: ("tab:gray", "s"),
    NEVER_STARTED: ("lightgray", "o"),
}


def plot_metric(ax: Any, report: SweepReport, key: str) -> None:
    """The metric of every job that measured it against one swept parameter; best in red, pruned in orange."""
    measured = [job for job in report.jobs if job.metrics and job.metrics.get(report.metric) is not None]
    best = report.best.jobs if report.best else []
    raw = [job.name if key == "job" else job.value(key) for job in measured]
    values = [(job.metrics or {})[report.metric] for job in measured]
    y = [100 * value if percent(report.metric) else value for value in values]
    numbers = [number for number in map(as_number, raw) if number is not None]
    x: list[float]
    if numbers and len(numbers) == len(raw):
        x = numbers
        if min(numbers) > 0 and max(numbers) / min(numbers) > 10:
            ax.set_xscale("log")
    else:
        labels = sorted({str(value) for value in raw})
        x = [labels.index(str(value)) for value in raw]
        ax.set_xticks(range(len(labels)), labels, parse_math=False)  # a value may hold ${...}: not TeX
    for state in (COMPLETE, PRUNED, INTERRUPTED):
        chosen = [index for index, job in enumerate(measured) if job.state == state]
        colours = ["tab:red" if measured[index] in best else STATE_STYLE[state][0] for index in chosen]
        ax.scatter(
            [x[index] for index in chosen],
            [y[index] for index in chosen],
            c=colours,
            marker=STATE_STYLE[state][1],
            alpha=0.8,
        )
    ax.set_xlabel(key)
    ax.grid(alpha=0.3)


def plot_states(ax: Any, report: SweepReport) -> None:
    """One mark per job, on the line of its state: every job is in the picture, whatever became of it."""
    present = [state for state in STATES if any(job.state == state for job in report.jobs)]
    for index, job in enumerate(report.jobs):
        colour, marker = STATE_STYLE[job.state]
        ax.scatter([index], [present.index(job.state)], c=colour, marker=marker, s=40)
    ax.set_yticks(range(len(present)), present)
    ax.set_ylim(-0.7, len(present) - 0.3)
    step = max(1, len(report.jobs) // 25)  # at most ~25 job labels, so they stay readable
    ax.set_xticks(range(0, len(report.jobs), step), [job.name for job in report.jobs][::step])
    ax.set_xlabel("job")
    ax.grid(alpha=0.3)


def write_plot(report: SweepReport, path: Path) -> None:
    """Top: the metric against each swept parameter (numbers on a log axis if they span >10x). Bottom: each
    job's state."""
    keys = report.swept or ["job"]
    figure = Figure(figsize=(max(3.6 * len(keys), 6), 5.2))
    top, bottom = figure.subfigures(2, 1, height_ratios=(3.2, 2.0), squeeze=False)[:, 0]
    axes = top.subplots(1, len(keys), squeeze=False, sharey=True)
    for ax, key in zip(axes[0], keys, strict=True):
        plot_metric(ax, report, key)
    axes[0][0].set_ylabel(f"{report.metric} (%)" if percent(report.metric) else report.metric)
    top.suptitle(f"{report.metric}: {report.counts()} (best in red)", fontsize=10)
    plot_states(bottom.subplots(), report)
    figure.savefig(path, dpi=110, format="png", bbox_inches="tight")


def as_number(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]  # None raises TypeError, caught below
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sweep_metric_and_mode(report: SweepReport) -> tuple[str, str]:
    """What the sweep's own report ranks by: its ``optimized_metric``, in the study's direction (else max)."""
    cfg = multirun_config(report.sweep_dir)
    metric = OmegaConf.select(cfg, "optimized_metric", default=None) if cfg is not None else None
    minimize = report.study is not None and report.study.direction == optuna.study.StudyDirection.MINIMIZE
    return str(metric or "val/acc_best"), "min" if minimize else "max"


def report_name(report: SweepReport) -> str:
    """``report`` for the sweep's own metric and mode; another's gets its own files beside it,
    e.g. ``report-test_err-min``, so the sweep's report is never silently replaced."""
    if (report.metric, report.mode) == sweep_metric_and_mode(report):
        return "report"
    return f"report-{re.sub(r'[^A-Za-z0-9_.-]', '_', report.metric)}-{report.mode}"


def write_report(report: SweepReport, name: str = "report") -> dict[str, Path]:
    """<name>.md, <name>.csv and <name>.png in the sweep dir."""
    paths = {suffix: report.sweep_dir / f"{name}.{suffix}" for suffix in ("md", "csv", "png")}
    for write, suffix in ((write_markdown, "md"), (write_csv, "csv"), (write_plot, "png")):
        with replaced_atomically(paths[suffix]) as temporary:  # a crash never leaves half a report
            write(report, temporary)
    return paths


def print_report(report: SweepReport, console: Console | None = None, name: str = "report") -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file or a pipe: no reason to squeeze the table into 80 columns
            console = Console(width=200)
    table = Table(
        title=f"{report.sweep_dir}: {report.n_jobs} jobs ({report.counts()}), best by {report.mode} {report.metric} ★"
    )
    for index, column in enumerate(columns(report)):
        table.add_column(column, justify="left" if index < len(report.swept) else "right")
    for cells, row in zip(table_rows(report), report.rows, strict=True):
        table.add_row(*cells, style="bold green" if row.best else None)
    console.print(table)
    if report.common:
        console.print(f"common overrides: {' '.join(report.common)}", highlight=False)
    for job in report.jobs:
        if job.state != COMPLETE:
            colour = "red" if job in report.failed else "yellow"
            console.print(f"[{colour}]{escape(job_line(report, job))}[/{colour}]", highlight=False, soft_wrap=True)
    for line in filter(
        None,
        [
            best_trial_line(report),
            *(f"importance {line}" if report.importances else line for line in importance_lines(report)),
        ],
    ):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"report: {report.sweep_dir}/{name}.md, {name}.csv, {name}.png")
    if report.study is not None:
        console.print(
            f"watch the study: make dashboard ARGS={shlex.quote(str(report.storage))}  "
            "(optuna-dashboard on http://127.0.0.1:8080)",
            highlight=False,
            soft_wrap=True,
        )
