"""Reading JSON files the user points at, with one-line errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acetui.errors import AcetuiError


def read_json(path: Path, error: type[AcetuiError] = AcetuiError) -> Any:
    """Parsed content of ``path``; ``error`` naming the file when it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as problem:
        raise error(f"{path}: cannot read ({getattr(problem, 'strerror', None) or problem})") from None
    except json.JSONDecodeError as problem:
        raise error(f"{path}: not valid JSON ({problem.msg}, line {problem.lineno})") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON (nested too deeply)") from None
