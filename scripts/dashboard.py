"""Watch a search live: python scripts/dashboard.py [<sweep dir> | <storage URL>] [--port 8080]

Serves optuna-dashboard (the `sweep` extra) for the newest search under logs/train/multiruns, or the one given,
on 127.0.0.1 only: a study's parameters and results stay on this machine. From another machine, tunnel to it:
ssh -L 8080:127.0.0.1:8080 <this machine>. `make dashboard ARGS=<sweep dir or storage URL>` runs this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convlens.errors import ConvlensError
from convlens.startup.run_task import PROJECT_ROOT, report_errors
from convlens.sweeps.sweep_study import newest_search, open_existing_storage, storage_of

HOST = "127.0.0.1"  # loopback only: never on the machine's other addresses


def serve(target: str | None, multiruns: Path, port: int) -> None:
    from optuna_dashboard import run_server  # the sweep extra; imported once the arguments are known good

    storage = storage_of(target) if target else storage_of(str(newest_search(multiruns)))
    opened = open_existing_storage(storage)
    print(f"optuna-dashboard for {storage} at http://{HOST}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        run_server(opened, host=HOST, port=port)
    except OSError as error:  # the port is taken (or not ours to bind)
        raise ConvlensError(f"cannot serve on {HOST}:{port} ({error.strerror}); pass another --port") from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="a search's sweep dir or a storage URL (default: the newest search)")
    parser.add_argument("--port", type=int, default=8080, help="the local port to serve on")
    parser.add_argument(
        "--multiruns",
        type=Path,
        default=PROJECT_ROOT / "logs" / "train" / "multiruns",
        help="where to look for the newest search",
    )
    args = parser.parse_args()
    try:
        report_errors(lambda: serve(args.target, args.multiruns, args.port))
    except KeyboardInterrupt:
        sys.stderr.write("\ndashboard stopped\n")


if __name__ == "__main__":
    main()
