"""Imported first by every entry point: Ctrl-C while it starts (imports, composing the config) is one line.

Python would print a KeyboardInterrupt traceback from deep inside some import, and an import that catches too
much can even swallow it and start the run anyway. Until the task begins, Ctrl-C therefore ends the process at
once, with the shell's 130: nothing has been written yet. From then on (``startup.run_task.task_begins``) Ctrl-C is
a KeyboardInterrupt again, printed as one line, and once training runs StopOnSignal handles it itself.
"""

import os
import signal
import sys

INTERRUPTED = "interrupted (Ctrl-C); nothing was run or saved after this point"
python_excepthook = sys.excepthook


def stop_while_starting(signum, frame) -> None:  # noqa: ANN001 (a signal handler's signature)
    sys.stderr.write(f"\n{INTERRUPTED}\n")
    os._exit(128 + signal.SIGINT)


def one_line_for_ctrl_c(kind, value, traceback) -> None:  # noqa: ANN001 (sys.excepthook's signature)
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write(f"\n{INTERRUPTED}\n")
        return
    python_excepthook(kind, value, traceback)


signal.signal(signal.SIGINT, stop_while_starting)
sys.excepthook = one_line_for_ctrl_c
