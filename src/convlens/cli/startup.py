"""Imported first by every entry point: Ctrl-C while it starts (imports, composing the config) is one line.

Python would print a KeyboardInterrupt traceback from deep inside some import; the exit status stays the
shell's 130 for an interrupted command. Once training runs, StopOnSignal handles Ctrl-C itself.
"""

import sys

python_excepthook = sys.excepthook


def one_line_for_ctrl_c(kind, value, traceback) -> None:  # noqa: ANN001 (sys.excepthook's signature)
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("\ninterrupted (Ctrl-C); nothing was run or saved after this point\n")
        return
    python_excepthook(kind, value, traceback)


sys.excepthook = one_line_for_ctrl_c
