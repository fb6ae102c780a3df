"""One exception type for every problem a user can fix: bad paths, bad files, bad settings.

Front ends print ``str(error)`` as a single line and never a traceback, so every message names the
file (or setting) and says what is wrong with it.
"""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message ("" when it has none): torch errors run to many lines."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def printable(text: str, limit: int | None = None) -> str:
    """``text`` (first ``limit`` characters) safe in a one-line terminal message: a control character (a
    newline or an escape sequence in a file name) or an undecodable byte of a name is shown as an escape
    instead of acting on the terminal."""
    return "".join(char if char.isprintable() else _escaped(char) for char in text[:limit])


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    return ascii(char)[1:-1]


def failure_text(error: Exception) -> str:
    """One line for a failure: a user's problem as it is, anything else marked as a bug to report."""
    if isinstance(error, AcetuiError):
        return str(error)
    return f"unexpected {type(error).__name__}: {first_line(error)} (please report this)"


class AcetuiError(Exception):
    """A problem with the user's input, reported as one human-readable line."""


class ModelLoadError(AcetuiError):
    """The checkpoint root, variant folder, config.json or weight files cannot be used."""


class DatasetError(AcetuiError):
    """The dataset folder or a sample file cannot be used."""


class OutputExistsError(AcetuiError):
    """An output file is already there and replacing it was not asked for (``--force``; the TUI asks)."""

    def __init__(self, path) -> None:
        super().__init__(f"{path} already exists; use --force to replace it")
        self.path = path
