"""Compare any training runs: python scripts/compare_runs.py logs/train/runs/* [--metric test/acc] [--out <folder>]

The sweep report's table and plot for the runs named (folders, or a quoted glob): the settings that differ as
columns, runs that differ only by seed as one row with mean ± std, the best marked. A folder that is not a run
is named and skipped. Writes report.md, report.csv and report.png into --out (logs/compare/<date>_<time>).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from convlens.startup.run_task import PROJECT_ROOT, report_errors
from convlens.sweeps.compare import build_comparison
from convlens.sweeps.report import print_report, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (logs/train/runs/<date>_<time>_<pid>) or a quoted glob")
    parser.add_argument("--metric", default="val/acc_best", help="the metrics.json key that picks the best row")
    parser.add_argument("--mode", choices=("max", "min"), default="max", help="max for accuracies, min for errors")
    parser.add_argument("--out", type=Path, help="where report.md/.csv/.png go (default: logs/compare/<date>_<time>)")
    args = parser.parse_args()
    root = Path(os.environ.get("CONVLENS_ROOT", PROJECT_ROOT))
    out = args.out or root / "logs" / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
    comparison = report_errors(lambda: build_comparison(args.runs, out, args.metric, args.mode))
    assert comparison is not None  # report_errors returns None only inside a Hydra multirun job; this script is none
    report, skipped = comparison
    console = Console()
    for path, why in skipped.items():
        console.print(f"[yellow]skipped {escape(str(path))}: {escape(why)}", highlight=False, soft_wrap=True)
    write_report(report)
    print_report(report)


if __name__ == "__main__":
    main()
