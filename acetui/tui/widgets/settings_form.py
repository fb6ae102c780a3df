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
from textual.validation import Function, Integer, Number, ValidationResult, Validator
from textual.widgets import Input, Label, Select

from acetui.errors import AcetuiError
from acetui.estimate import SCORES
from acetui.estimate.objective import TimestepFocus
from acetui.estimate.request import CHECKPOINTING, DTYPES, GRANULARITIES, MODULE_SETS, SEED_LIMIT

FOCUS_PRESETS = ("balanced", "texture", "structure")


def _batches_ok(text: str) -> bool:
    return text == "auto" or (text.isdigit() and int(text) > 0)


def parse_seed(text: str) -> int:
    """A seed the engine takes: torch generators accept 0 <= seed < 2**63 (checked as an int: Textual's
    Integer validator compares a float, which rounds 2**63 - 1 up and refuses it)."""
    seed = int(text) if re.fullmatch(r"[-+]?\d+", text.strip()) else -1
    if not 0 <= seed < SEED_LIMIT:
        raise AcetuiError("seed must be a whole number from 0 to 2**63 - 1")
    return seed


class Parses(Validator):
    """Valid when ``parse`` accepts the text; a failure carries the parser's own message, which says
    what is wrong (e.g. LOW must be below HIGH) where a fixed description could only list the forms."""

    def __init__(self, parse: Callable[[str], object]) -> None:
        super().__init__()
        self.parse = parse

    def validate(self, value: str) -> ValidationResult:
        try:
            self.parse(value)
        except (AcetuiError, ValueError) as error:
            return self.failure(str(error), value)
        return self.success()


@dataclass(frozen=True)
class Field:
    """One setting: a Select when it has ``choices``, else an Input whose text ``parse`` turns into the
    request value (``optional``: blank means None)."""

    key: str
    label: str
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] = str
    validator: Validator | None = None
    input_type: str = "text"
    optional: bool = False
    suggestions: tuple[str, ...] = ()
    placeholder: str = ""


def integer(key: str, label: str, minimum: int = 1, *, placeholder: str = "") -> Field:
    """An integer setting; with a ``placeholder`` it may be left blank (None)."""
    return Field(
        key,
        label,
        parse=int,
        validator=Integer(minimum=minimum),
        input_type="integer",
        optional=bool(placeholder),
        placeholder=placeholder,
    )


FIELDS = (
    Field("batches", "batches (n or auto)", validator=Function(_batches_ok, "a positive number or auto")),
    integer("max_batches", "max batches (auto)"),
    Field(
        "stability_target",
        "stability target (auto)",
        parse=float,
        validator=Number(minimum=0.01, maximum=1.0),
        input_type="number",
    ),
    integer("top_k", "top-k"),
    Field("granularity", "granularity", GRANULARITIES),
    Field("seed", "seed", parse=parse_seed, validator=Parses(parse_seed), input_type="integer"),
    integer("batch_size", "batch size"),
    Field("device", "device", ("auto",)),
    Field("dtype", "dtype", ("auto", *DTYPES)),
    Field(
        "timestep_focus",
        "timestep focus",
        validator=Parses(TimestepFocus.parse),
        suggestions=FOCUS_PRESETS,
    ),
    integer("crop_frames", "crop frames", minimum=2, placeholder="blank: whole samples"),
    Field("activation_checkpointing", "activation checkpointing", CHECKPOINTING),
    Field("modules", "modules", MODULE_SETS),
    Field("score", "score", SCORES),
)
AUTO_ONLY = ("max_batches", "stability_target")

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
            yield Label(field.label)
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
            validators=[field.validator] if field.validator else None,
            valid_empty=field.optional,
            compact=True,
            disabled=field.key in AUTO_ONLY and str(self.initial.get("batches")) != "auto",
            id=ident(field.key),
        )

    @on(Input.Changed, "#batches")
    def batches_changed(self, event: Input.Changed) -> None:
        for key in AUTO_ONLY:
            self.query_one(f"#{ident(key)}", Input).disabled = event.value.strip() != "auto"

    def set_devices(self, devices: list[tuple[str, str]], current: str) -> None:
        select = self.query_one("#device", Select)
        select.set_options(devices)
        values = [value for _, value in devices]
        select.value = current if current in values else values[0]

    def values(self) -> dict[str, Any]:
        """Request fields (plus ``score``); AcetuiError naming the first field that is not valid."""
        values: dict[str, Any] = {}
        for field in FIELDS:
            widget = self.query_one(f"#{ident(field.key)}")
            if isinstance(widget, Select):
                values[field.key] = widget.value
                continue
            text = widget.value.strip()
            result = widget.validate(text)
            if result is not None and not result.is_valid:
                problem = "; ".join(result.failure_descriptions)
                raise AcetuiError(problem if problem.startswith(field.label) else f"{field.label}: {problem}")
            values[field.key] = None if field.optional and not text else field.parse(text)
        batches = values.pop("batches")
        values["auto_batches"] = batches == "auto"
        if batches != "auto":
            values["batches"] = int(batches)
        return values
