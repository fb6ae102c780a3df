"""The run settings as a compact labelled form; ``values()`` reads it back as request fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid
from textual.suggester import SuggestFromList
from textual.validation import Function, Integer
from textual.widgets import Input, Label, Select

from acetui.errors import AcetuiError
from acetui.estimate import SCORES
from acetui.estimate.objective import TimestepFocus
from acetui.estimate.request import DTYPES, GRANULARITIES, MODULE_SETS

FOCUS_PRESETS = ("balanced", "texture", "structure")


def _batches_ok(text: str) -> bool:
    return text == "auto" or (text.isdigit() and int(text) > 0)


def _focus_ok(text: str) -> bool:
    try:
        TimestepFocus.parse(text)
    except (AcetuiError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    choices: tuple[str, ...] = ()
    integer: bool = False


FIELDS = (
    Field("batches", "batches (n or auto)"),
    Field("top_k", "top-k", integer=True),
    Field("granularity", "granularity", GRANULARITIES),
    Field("seed", "seed", integer=True),
    Field("batch_size", "batch size", integer=True),
    Field("device", "device", ("auto",)),
    Field("dtype", "dtype", ("auto", *DTYPES)),
    Field("timestep_focus", "timestep focus"),
    Field("modules", "modules", MODULE_SETS),
    Field("score", "score (results)", SCORES),
)

FIELD_KEYS = tuple(field.key for field in FIELDS)


class SettingsForm(Grid):
    """Two columns of label and control; selects and inputs are compact so it fits in 80x24."""

    DEFAULT_CSS = """
    SettingsForm { grid-size: 2; grid-columns: 22 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
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
        ident = field.key.replace("_", "-")
        if field.choices:
            options = [(choice, choice) for choice in field.choices]
            if value is not None and value not in field.choices:
                options.append((str(value), value))
            return Select(options, value=value or field.choices[0], allow_blank=False, compact=True, id=ident)
        if field.key == "batches":
            return Input(
                str(value), validators=[Function(_batches_ok, "a positive number or auto")], compact=True, id=ident
            )
        if field.key == "timestep_focus":
            return Input(
                str(value),
                suggester=SuggestFromList(FOCUS_PRESETS),
                validators=[Function(_focus_ok, "balanced, texture, structure or LOW,HIGH")],
                compact=True,
                id=ident,
            )
        return Input(
            str(value),
            type="integer",
            validators=[Integer(minimum=0 if field.key == "seed" else 1)],
            compact=True,
            id=ident,
        )

    def set_devices(self, devices: list[tuple[str, str]], current: str) -> None:
        select = self.query_one("#device", Select)
        select.set_options(devices)
        values = [value for _, value in devices]
        select.value = current if current in values else values[0]

    def values(self) -> dict[str, Any]:
        """Request fields (plus ``score``); AcetuiError naming the first field that is not valid."""
        values: dict[str, Any] = {}
        for field in FIELDS:
            widget = self.query_one(f"#{field.key.replace('_', '-')}")
            if isinstance(widget, Select):
                values[field.key] = widget.value
                continue
            text = widget.value.strip()
            result = widget.validate(text)
            if result is not None and not result.is_valid:
                raise AcetuiError(f"{field.label}: {'; '.join(result.failure_descriptions)}")
            values[field.key] = int(text) if field.integer else text
        batches = values.pop("batches")
        values["auto_batches"] = batches == "auto"
        if batches != "auto":
            values["batches"] = int(batches)
        return values
