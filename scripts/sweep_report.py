"""Summarise a sweep: python scripts/sweep_report.py logs/train/multiruns/<date>_<time>_<pid> [--metric test/acc] [--mode min]

Writes report.md, report.csv and report.png into the sweep dir and prints the table. A multirun already does
this when it ends (conf/hydra/default.yaml); run it yourself for a sweep still running, stopped, or continued.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convlens.cli.entry import report_errors
from convlens.sweeps.report import build_report, print_report, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir: one folder per job, each with .hydra/")
    parser.add_argument("--metric", default="val/acc_best", help="the metrics.json key that picks the best row")
    parser.add_argument("--mode", default="max", choices=("max", "min"), help="max for accuracies, min for errors")
    args = parser.parse_args()
    report = report_errors(lambda: build_report(args.sweep_dir, args.metric, args.mode))
    write_report(report)
    print_report(report)


if __name__ == "__main__":
    main()
