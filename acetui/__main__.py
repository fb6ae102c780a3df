"""``python -m acetui`` (also what ``torchrun -m acetui`` runs) and the ``acetui`` script's entry point.

The command's modules import torch, which takes most of a second: a Ctrl+C in that time must end the
command like any other (exit 130, one line), not with a traceback from deep inside torch's import. In a
folder deleted meanwhile (another shell removed it) torch's import aborts the process with "Cannot load
libtorch_cpu.so", which reads as a broken install: said as it is before anything is imported. A standard
stream the caller closed (``>&-``) becomes the null device first: the command's writes to it are dropped,
and no file opened later can take its descriptor and receive them.
"""

import os
import sys

EXIT_ERROR = 1  # as acetui.cli's, which cannot be imported before these are handled
EXIT_INTERRUPTED = 130


def run() -> int:
    """Import the command, then run it."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:  # closed by the caller (>&-, 2>&-): what goes there is dropped
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # open for the process's life
    try:
        os.getcwd()
    except FileNotFoundError:
        print("acetui: the current folder no longer exists (deleted?); cd to another one", file=sys.stderr)
        return EXIT_ERROR
    try:
        from acetui.cli import main
    except KeyboardInterrupt:
        print("acetui: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return main()


if __name__ == "__main__":
    sys.exit(run())
