"""Fetch MNIST's four raw files, verified by MD5, into <data_dir>/MNIST/raw and say where they are.

python scripts/fetch_data.py [--data-dir data]
"""

import argparse
import sys

from rich.console import Console

from convlens.data.mnist_files import MNIST_MD5, ensure_mnist
from convlens.errors import ConvlensError
from convlens.startup.run_log import print_error
from convlens.startup.run_task import PROJECT_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(PROJECT_ROOT / "data"), help="the same folder as paths.data_dir")
    args = parser.parse_args()
    console = Console()
    try:
        raw = ensure_mnist(args.data_dir)
    except ConvlensError as error:
        print_error(str(error))
        return 1
    console.print(f"MNIST ready in {raw} ({len(MNIST_MD5)} files, MD5 verified)", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
