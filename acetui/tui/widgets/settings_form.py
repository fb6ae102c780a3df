"""The run settings as a compact labelled form; ``values()`` reads it back as request fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid
from textual.suggester import SuggestFromList
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select

from acetui.errors import AcetuiError
from acetui.estimate import SCORES
from acetui.estimate.objective import TimestepFocus
from acetui.estimate.request import CHECKPOINTING, CUDA_GRAPHS, DTYPES, GRANULARITIES, MODULE_SETS, check_settings

FOCUS_PRESETS = ("balanced", "texture", "structure")
MAX_DIGITS = 30  # the largest range (seeds, below 2**63) needs 19


def shorten(text: str) -> str:
    """``text`` quoted for a message, its start only when long (a pasted block must not flood the notice)."""
    return repr(text) if len(text) <= 24 else f"{text[:20]!r}... ({len(text)} characters)"


def engine_rule(key: str, value: Any) -> Any:
    """``value`` once the engine's own check of request field ``key`` (``EstimateRequest.validate``)
    accepts it; AcetuiError in the engine's words: one rule for the form, the CLI and profiles."""
    check_settings({key: value})
    return value


def whole_number(key: str, name: str, *, or_auto: bool = False) -> Callable[[str], Any]:
    """The parser of a whole-number setting (``auto`` too with ``or_auto``), its range the engine's. The
    text is matched, not given to ``float``: a float rounds 2**63 - 1 up, past the largest seed."""
    accepted = "a whole number or auto" if or_auto else "a whole number"

    def parse(text: str) -> Any:
        if or_auto and text.lower() == "auto":
            return "auto"
        if not re.fullmatch(r"[-+]?\d+", text):
            raise AcetuiError(f"{name} must be {accepted}, got {shorten(text)}")
        digits = len(text.lstrip("+-"))
        if digits > MAX_DIGITS:  # out of every range, and past int()'s digit limit
            raise AcetuiError(f"{name} is far out of range ({digits} digits)")
        return engine_rule(key, int(text))

    return parse


def parse_stability_target(text: str) -> float:
    try:
        target = float(text)
    except ValueError:
        raise AcetuiError(f"stability target must be a number, got {shorten(text)}") from None
    return engine_rule("stability_target", target)


def parse_focus(text: str) -> str:
    """The timestep focus as typed, once the engine's parser accepts it."""
    TimestepFocus.parse(text)
    return text


class Parses(Validator):
    """Valid when ``parse`` accepts the text; a failure carries the parser's own message, which says
    what is wrong (e.g. LOW must be below HIGH) where a fixed description could only list the forms.
    It also keeps Textual's default validators, and their wording, off typed inputs."""

    def __init__(self, parse: Callable[[str], object]) -> None:
        super().__init__()
        self.parse = parse

    def validate(self, value: str) -> ValidationResult:
        try:
            self.parse(value.strip())
        except AcetuiError as error:
            return self.failure(str(error), value)
        return self.success()


@dataclass(frozen=True)
class Field:
    """One setting: a Select when it has ``choices``, else an Input whose text ``parse`` checks and turns
    into the request value, its AcetuiError saying what the field accepts (``optional``: blank means None)."""

    key: str
    label: str
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] = str
    input_type: str = "text"
    optional: bool = False
    suggestions: tuple[str, ...] = ()
    placeholder: str = ""


def integer(key: str, label: str, *, name: str = "", placeholder: str = "") -> Field:
    """A whole-number setting, called ``name`` (else ``label``) in messages; with a ``placeholder`` it may be
    left blank (None)."""
    return Field(
        key,
        label,
        parse=whole_number(key, name or label),
        input_type="integer",
        optional=bool(placeholder),
        placeholder=placeholder,
    )


FIELDS = (
    Field("batches", "batches (n or auto)", parse=whole_number("batches", "batches", or_auto=True)),
    integer("max_batches", "max batches (auto)", name="max batches"),
    Field("stability_target", "stability target (auto)", parse=parse_stability_target, input_type="number"),
    integer("top_k", "top-k"),
    Field("granularity", "granularity", GRANULARITIES),
    integer("seed", "seed"),
    integer("batch_size", "batch size"),
    Field("device", "device", ("auto",)),
    Field("dtype", "dtype", ("auto", *DTYPES)),
    Field("timestep_focus", "timestep focus", parse=parse_focus, suggestions=FOCUS_PRESETS),
    integer("crop_frames", "crop frames", placeholder="blank: whole samples"),
    Field("activation_checkpointing", "activation checkpointing", CHECKPOINTING),
    Field("cuda_graphs", "CUDA graphs", CUDA_GRAPHS),
    Field("modules", "modules", MODULE_SETS),
    Field("score", "score", SCORES),
)
AUTO_ONLY = ("max_batches", "stability_target")
GPU_ONLY = ("cuda_graphs",)  # shown only for a run on a GPU: 80x24 has no row to spare for a setting that does nothing

FIELD_KEYS = tuple(field.key for field in FIELDS)


def ident(key: str) -> str:
    return key.replace("_", "-")


class SettingsForm(Grid):
    """Two columns of label and control; selects and inputs are compact so it fits in 80x24. The auto-only
    settings are disabled unless batches is ``auto``."""

    DEFAULT_CSS = """
    SettingsForm { grid-size: 2; grid-columns: 25 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    SettingsForm > Label { text-align: right; width: 100%; color: $text-muted; }
    SettingsForm > Input.-invalid { color: $error; }
    """

    def __init__(self, values: dict[str, Any], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.initial = values

    def compose(self) -> ComposeResult:
        for field in FIELDS:
            yield Label(field.label, id=f"{ident(field.key)}-label" if field.key in GPU_ONLY else None)
            yield self.control(field, self.initial.get(field.key))

    def control(self, field: Field, value: Any) -> Input | Select:
        if field.choices:
            options = [(choice, choice) for choice in field.choices]
            if value is not None and value not in field.choices:
                options.append((str(value), value))
            return Select(
                options, value=value or field.choices[0], allow_blank=False, compact=True, id=ident(field.key)
            )
        return Input(
            "" if value is None else str(value),
            placeholder=field.placeholder,
            type=field.input_type,
            suggester=SuggestFromList(field.suggestions) if field.suggestions else None,
            validators=[Parses(field.parse)],
            valid_empty=field.optional,
            compact=True,
            disabled=field.key in AUTO_ONLY and str(self.initial.get("batches")) != "auto",
            id=ident(field.key),
        )

    @on(Input.Changed, "#batches")
    def batches_changed(self, event: Input.Changed) -> None:
        for key in AUTO_ONLY:
            self.query_one(f"#{ident(key)}", Input).disabled = event.value.strip().lower() != "auto"

    def show_gpu_settings(self, shown: bool) -> None:
        """The GPU-only settings' rows, shown or not; hidden, they keep their values (a profile's stay)."""
        for key in GPU_ONLY:
            self.query_one(f"#{ident(key)}-label").display = shown
            self.query_one(f"#{ident(key)}").display = shown

    def set_devices(self, devices: list[tuple[str, str]], current: str) -> None:
        select = self.query_one("#device", Select)
        select.set_options(devices)
        values = [value for _, value in devices]
        select.value = current if current in values else values[0]
        select.mutate_reactive(Select.value)  # an unchanged value keeps its old label ("auto", not "auto (cpu)")

    def values(self) -> dict[str, Any]:
        """Request fields (plus ``score``); AcetuiError listing every field that is not valid, one a line.
        A disabled field (auto-only, batches a number) is left out: it does not apply and cannot be fixed."""
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field in FIELDS:
            widget = self.query_one(f"#{ident(field.key)}")
            if isinstance(widget, Select):
                values[field.key] = widget.value
            elif not widget.disabled:
                text = widget.value.strip()
                try:
                    values[field.key] = None if field.optional and not text else field.parse(text)
                except AcetuiError as error:
                    problems.append(str(error))
        if problems:
            raise AcetuiError("\n".join(problems))
        batches = values.pop("batches")
        values["auto_batches"] = batches == "auto"
        if batches != "auto":
            values["batches"] = batches
        return values
