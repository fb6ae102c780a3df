"""``python -m acetui`` (also what ``torchrun -m acetui`` runs)."""

import sys

from acetui.cli import main

sys.exit(main())
