"""Named parameter profiles and the last-used settings, stored as TOML in the user config folder.

A profile holds any subset of the run settings (checkpoint, variant, dataset, batches, ...). Files are
validated strictly: an unknown key or a wrong type is reported with the file and key, never fatal to
the app, and the broken file is left in place for the user to fix.
"""

from __future__ import annotations

import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomli_w

from acetui import paths
from acetui.atomic import write_text_atomic
from acetui.errors import AcetuiError
from acetui.estimate.request import REQUEST_DEFAULTS, EstimateRequest, check_settings
from acetui.model.variants import variant_label
from acetui.units import aligned_lines

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "Path": (str,),
    "str": (str,),
    "int": (int,),
    "int | None": (int,),
    "bool": (bool,),
    "float": (float, int),
}
_TYPES = {field.name: _TOML_TYPES[str(field.type)] for field in fields(EstimateRequest)}
_FOLDERS = (("checkpoint_dir", "checkpoint folder"), ("dataset_dir", "dataset folder"))


class ProfileError(AcetuiError):
    """A profile name or file that cannot be used."""


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        rule = "start with a letter or digit, then use letters, digits, '.', '-' or '_' (at most 64 in all)"
        raise ProfileError(f"profile name {name!r}: {rule}")
    return name


def profile_path(name: str) -> Path:
    return paths.app_dirs().profiles / f"{_check_name(name)}.toml"


def validate_settings(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Keep known keys with the right types; ProfileError naming the source and key otherwise."""
    for key, value in values.items():
        if key not in _TYPES:
            raise ProfileError(f"{source}: unknown key {key!r}")
        expected = _TYPES[key]
        if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in expected)
            raise ProfileError(f"{source}: key {key!r} should be {names}, found {value!r}")
    return values


def read_settings(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile") from None
    except OSError as error:
        raise ProfileError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML (not UTF-8 text: byte {error.start})") from None
    return validate_settings(values, str(path))


def settings_of(request: EstimateRequest) -> dict[str, Any]:
    """A request as TOML-ready values (TOML has no null: unset optional values are left out)."""
    return {key: value for key, value in request.to_dict().items() if value is not None}


def write_settings(path: Path, values: dict[str, Any]) -> None:
    write_text_atomic(path, tomli_w.dumps({k: v for k, v in values.items() if v is not None}))


def save_profile(name: str, values: dict[str, Any]) -> Path:
    path = profile_path(name)
    write_settings(path, validate_settings(dict(values), str(path)))
    return path


def save_new_profile(name: str, values: dict[str, Any]) -> Path | None:
    """Save ``values`` as profile ``name`` where nothing can ask before replacing one (the command line); its
    file, or None when it holds these settings already (every rank of a multi-process run saves them).
    Refused when a profile of that name holds other settings."""
    path = profile_path(name)
    if not path.exists():
        return save_profile(name, values)
    try:  # a setting the file leaves out has its default: a profile saved before the setting existed matches
        same = _with_defaults(read_settings(path)) == _with_defaults(values)
    except ProfileError:
        same = False
    if not same:
        raise ProfileError(
            f"profile {name!r} exists with other settings ({path}): acetui profiles --delete {name} first, "
            "or save under another name"
        )
    return None


def _with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in {**REQUEST_DEFAULTS, **values}.items() if value is not None}


def profiles_table() -> str:
    """``acetui profiles``: a line per saved profile with what it runs on, and why it cannot run as it is
    (a folder gone, a file that does not read)."""
    rows = [("profile", "variant", "dataset", "batches", "")]
    for name in list_profiles():
        try:
            values = load_profile(name)
            check_settings(values)  # a value out of range (a top-k of 0) stops a run as surely as bad TOML
        except AcetuiError as error:  # a ProfileError is one
            rows.append((name, "-", "-", "-", f"unusable: {error}"))
            continue
        batches = "auto" if values["auto_batches"] else str(values["batches"])
        dataset = Path(values["dataset_dir"]).name if "dataset_dir" in values else "-"
        variant = variant_label(str(values["variant"])) if "variant" in values else "-"
        rows.append((name, variant, dataset, batches, missing_folders(values)))
    return aligned_lines(rows)


def saved_profile(name: str) -> Path:
    """The file of a saved profile; ProfileError naming the profile and the saved ones (or, with none, where
    they would be) when there is no such profile, so a mistyped ``--profile`` shows what to type instead."""
    path = profile_path(name)
    if not path.exists():
        names = list_profiles()
        saved = f"saved: {', '.join(names)}" if names else f"none saved yet in {path.parent}"
        raise ProfileError(f"no such profile {name!r} ({saved})")
    return path


def load_profile(name: str) -> dict[str, Any]:
    """Every setting of the profile: one the file leaves out takes the request's default (TOML has no
    null, so a profile saved without a crop has no crop key), so loading over other settings keeps none
    of theirs. The folders and variant have no default and are only set when the file names them."""
    return {**REQUEST_DEFAULTS, **read_settings(saved_profile(name))}


def check_profile_ranges(name: str, values: dict[str, Any]) -> None:
    """ProfileError naming profile ``name``'s file when one of ``values``, settings taken from it, is out of
    range (a top-k of 0), as a wrong type is named: the request's own check says what is wrong but not
    where the value came from. The folders and variant are checked when the run starts."""
    try:
        check_settings(values)
    except AcetuiError as error:
        raise ProfileError(f"{profile_path(name)}: {error}") from None


def delete_profile(name: str) -> Path:
    """Remove a saved profile; ProfileError when it does not exist or cannot be removed."""
    path = profile_path(name)
    try:
        path.unlink()
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile") from None
    except OSError as error:
        raise ProfileError(f"{path}: cannot delete ({error.strerror})") from None
    return path


def missing_folders(values: dict[str, Any]) -> str:
    """'dataset folder /x not found' (or 'is not a folder') for each folder the settings name that is not
    one ('' when all are), so a profile whose data moved says so when loaded, not when the run fails."""
    problems = []
    for key, label in _FOLDERS:
        folder = Path(values[key]).expanduser() if key in values else None
        if folder is not None and not folder.is_dir():
            problems.append(f"{label} {values[key]} {'is not a folder' if folder.exists() else 'not found'}")
    return "; ".join(problems)


def list_profiles() -> list[str]:
    folder = paths.app_dirs().profiles
    return sorted(path.stem for path in folder.glob("*.toml")) if folder.is_dir() else []


def save_last(values: dict[str, Any]) -> None:
    write_settings(paths.app_dirs().last_settings, values)


def load_last() -> tuple[dict[str, Any], str]:
    """The last used settings and a problem message ('' when fine; missing file is not a problem)."""
    path = paths.app_dirs().last_settings
    if not path.exists():
        return {}, ""
    try:
        return read_settings(path), ""
    except ProfileError as error:
        return {}, str(error)
