"""Summarise a sweep: python scripts/sweep_report.py logs/train/multiruns/<sweep> [--metric test/err --mode min]

Writes report.md, report.csv and report.png into the sweep dir and prints the table. A multirun already does
this when it ends (conf/hydra/default.yaml); run it yourself for a sweep still running, stopped, or continued.
Ranked by another metric or mode than the sweep's own, the files are named for it (report-test_err-min.md, ...)
and sit beside the sweep's report; --replace writes them over report.* instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convlens.startup.run_task import report_errors
from convlens.sweeps.report import build_report, print_report, report_name, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir: one folder per job, each with .hydra/")
    parser.add_argument("--metric", default="val/acc_best", help="the metrics.json key that picks the best row")
    parser.add_argument(
        "--mode",
        choices=("max", "min"),
        help="max for accuracies, min for errors (default: the search's direction, else max)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="write report.md/.csv/.png even when ranking by another metric or mode than the sweep's",
    )
    args = parser.parse_args()
    report = report_errors(lambda: build_report(args.sweep_dir, args.metric, args.mode))
    assert report is not None  # report_errors returns None only inside a Hydra multirun job; this script is none
    name = "report" if args.replace else report_name(report)
    write_report(report, name)
    print_report(report, name=name)


if __name__ == "__main__":
    main()
