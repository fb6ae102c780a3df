"""``python -m acetui`` (also what ``torchrun -m acetui`` runs) and the ``acetui`` script's entry point.

The command's modules import torch, which takes most of a second: a Ctrl+C in that time must end the
command like any other (exit 130, one line), not with a traceback from deep inside torch's import. In a
folder deleted meanwhile (another shell removed it) torch's import aborts the process with "Cannot load
libtorch_cpu.so", which reads as a broken install: said as it is before anything is imported.
"""

import os
import sys

EXIT_ERROR = 1  # as acetui.cli's, which cannot be imported before these are handled
EXIT_INTERRUPTED = 130


def run() -> int:
    """Import the command, then run it."""
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
