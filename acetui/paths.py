"""Where acetui keeps its files. Resolved in one place so tests can point everything at a temp folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_path, user_config_path, user_data_path

APP_NAME = "acetui"


@dataclass(frozen=True)
class AppDirs:
    config: Path
    data: Path
    cache: Path

    @property
    def profiles(self) -> Path:
        return self.config / "profiles"

    @property
    def last_settings(self) -> Path:
        return self.config / "last.toml"

    @property
    def runs(self) -> Path:
        return self.data / "runs"

    @property
    def demo(self) -> Path:
        return self.cache / "demo"

    @property
    def effective_rank(self) -> Path:
        return self.cache / "effective-rank"

    @property
    def scans(self) -> Path:
        return self.cache / "scans"


def app_dirs() -> AppDirs:
    """The platform's per-user folders for acetui (tests monkeypatch this function)."""
    return AppDirs(
        config=user_config_path(APP_NAME, appauthor=False),
        data=user_data_path(APP_NAME, appauthor=False),
        cache=user_cache_path(APP_NAME, appauthor=False),
    )
