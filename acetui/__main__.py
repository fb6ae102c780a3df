"""``python -m acetui`` (also what ``torchrun -m acetui`` runs) and the ``acetui`` script's entry point.

The command's modules import torch, which takes most of a second: a Ctrl+C in that time must end the
command like any other (exit 130, one line), not with a traceback from deep inside torch's import.
"""

import sys

EXIT_INTERRUPTED = 130  # as acetui.cli's, which cannot be imported before the interrupt is handled


def run() -> int:
    """Import the command, then run it."""
    try:
        from acetui.cli import main
    except KeyboardInterrupt:
        print("acetui: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return main()


if __name__ == "__main__":
    sys.exit(run())
