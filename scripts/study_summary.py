"""Summarise a search for the repository: python scripts/study_summary.py <sweep dir> --out docs/searches/<name>.json

Writes the best parameters, how many trials completed, were pruned or failed, how many steps they trained, the
hours it took (wall; the trials' summed durations; CPU, if you measured it) and the parameters'
importances: what docs/sweeps.md quotes, small enough to commit (the study's database is not).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from convlens.faults.atomic_files import replaced_atomically
from convlens.startup.run_task import report_errors
from convlens.sweeps.study_summary import summarise_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a search's sweep dir (its optuna.db and multirun.yaml)")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: print it only)")
    parser.add_argument(
        "--cpu-seconds",
        type=float,
        help="the search command's CPU time, user + sys (e.g. from /usr/bin/time -v), for hours.cpu",
    )
    args = parser.parse_args()
    text = (
        json.dumps(report_errors(lambda: summarise_search(args.sweep_dir, args.cpu_seconds)), indent=2, default=str)
        + "\n"
    )
    if args.out:
        with replaced_atomically(args.out) as tmp:
            tmp.write_text(text)
    Console().print_json(text)


if __name__ == "__main__":
    main()
