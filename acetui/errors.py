"""One exception type for every problem a user can fix: bad paths, bad files, bad settings.

Front ends print ``str(error)`` as a single line and never a traceback, so every message names the
file (or setting) and says what is wrong with it.
"""


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
