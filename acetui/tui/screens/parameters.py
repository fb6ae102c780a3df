"""Step 3: the run settings, a batch-count hint from free memory, and named profiles to load and save."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from functools import partial
from typing import Any

import torch
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Select, Static
from textual.worker import Worker, WorkerState

from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest
from acetui.estimate.memory import memory_stats
from acetui.profiles import ProfileError, list_profiles, load_profile, save_profile, settings_of
from acetui.tui.commands import PaletteCommand
from acetui.tui.screens.profile import ProfileScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.settings_form import FIELD_KEYS, SettingsForm
from acetui.units import format_bytes

GIB = 1024**3
VRAM_HINTS = ((48, "10-20 batches"), (24, "10 batches"), (12, "5 batches"), (8, "3 batches"))


def batches_hint(free: tuple[bool, int] | None) -> str:
    """The reference tool's table for ``(is_cuda, free bytes)``: 8 GB -> 3 batches, 12 -> 5, 24 -> 10, 48 -> 10-20."""
    if free is None:
        return "free memory unknown: start with 3-5 batches"
    is_cuda, available = free
    if not is_cuda:
        return (
            f"CPU, {format_bytes(available)} RAM free: the GPU table does not apply; minutes per batch on "
            "real models, so 3-5 batches (auto with a low max) and crop frames to save RAM"
        )
    for gigabytes, advice in VRAM_HINTS:
        if available >= gigabytes * GIB:
            return f"{format_bytes(available)} VRAM free: {advice}"
    return f"{format_bytes(available)} VRAM free: 1-3 batches; use bf16 and crop frames"


def probe_devices() -> tuple[list[tuple[str, str]], dict[str, tuple[bool, int]]]:
    """(label, value) options and (is_cuda, free bytes) per option; CUDA is queried only when available."""
    cpu = (False, memory_stats(torch.device("cpu")).free)
    options, free = [("auto", "auto")], {"cpu": cpu, "auto": cpu}
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            available, _ = torch.cuda.mem_get_info(index)
            name = f"cuda:{index}"
            options.append((f"{name} {torch.cuda.get_device_name(index)} ({format_bytes(available)} free)", name))
            free[name] = (True, available)
        free["auto"] = free["cuda:0"]
    options.append((f"cpu ({format_bytes(cpu[1])} RAM free)", "cpu"))
    return options, free


def form_values(draft: dict[str, Any], score: str) -> dict[str, Any]:
    """What the form shows: request defaults overlaid with the draft."""
    values = {field.name: field.default for field in fields(EstimateRequest) if field.name in FIELD_KEYS}
    values.update({key: value for key, value in draft.items() if key in values})
    values["batches"] = "auto" if draft.get("auto_batches") else values["batches"]
    values["score"] = score
    return values


class ParametersScreen(Screen):
    CSS_PATH = "parameters.tcss"
    TITLE = "3 · Parameters"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True, tooltip="Start the estimate", id="run"),
        Binding("ctrl+s", "save_profile", "Save profile", priority=True, id="profile-save"),
        Binding("ctrl+o", "load_profile", "Load profile", priority=True, id="profile-load"),
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the dataset", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.free: dict[str, tuple[bool, int]] = {}
        self.devices_ready = False

    def compose(self) -> ComposeResult:
        draft = self.app.draft
        yield Header()
        with VerticalScroll():
            yield Static(self.source_text(), id="source")
            yield SettingsForm(form_values(draft, self.app.score), id="form")
            yield Static(id="hint")
        yield Footer(compact=True)

    def source_text(self) -> Text:
        draft = self.app.draft
        text = Text()
        text.append(f"{draft.get('variant', '?')}", style="bold")
        text.append(f" from {draft.get('checkpoint_dir', '?')}\n", style="dim")
        text.append("dataset ", style="dim")
        text.append(f"{draft.get('dataset_dir', '?')}")
        return text

    def on_mount(self) -> None:
        self.query_one("#hint", Static).update("checking devices ...")
        self.find_devices()

    @work(thread=True, exclusive=True, group="devices", exit_on_error=False, description="listing devices")
    def find_devices(self) -> tuple[list[tuple[str, str]], dict[str, tuple[bool, int]]]:
        return probe_devices()

    @on(Worker.StateChanged)
    def devices_found(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "devices":
            return
        if event.state == WorkerState.SUCCESS:
            options, self.free = event.worker.result
            self.devices_ready = True
            self.query_one(SettingsForm).set_devices(options, self.app.draft.get("device", "auto"))
            self.show_hint()
        elif event.state == WorkerState.ERROR:
            self.query_one("#hint", Static).update(Text(f"cannot list devices: {event.worker.error}", style="red"))

    @on(Select.Changed, "#device")
    def show_hint(self) -> None:
        device = self.query_one("#device", Select).value
        self.query_one("#hint", Static).update(Text("hint: " + batches_hint(self.free.get(str(device)))))

    def request(self) -> EstimateRequest | None:
        """The form as a request, or None after telling the user what is wrong."""
        try:
            values = self.query_one(SettingsForm).values()
            self.app.score = values["score"]
            self.app.draft.update(values)
            return EstimateRequest.from_dict(self.app.draft)
        except (AcetuiError, KeyError) as error:
            self.notify(str(error), title="Cannot run", severity="error")
            return None

    def action_run(self) -> None:
        if not self.devices_ready:
            self.notify("Still checking devices; try again in a moment", severity="warning")
            return
        request = self.request()
        if request is not None:
            self.app.remember(request)
            self.app.push_screen(RunScreen(request))

    def action_save_profile(self) -> None:
        if self.request() is not None:
            self.app.push_screen(ProfileScreen("Save profile as", list_profiles()), self.save_profile)

    def save_profile(self, name: str | None) -> None:
        if not name:
            return
        try:
            path = save_profile(name, settings_of(EstimateRequest.from_dict(self.app.draft)))
        except AcetuiError as error:
            self.notify(str(error), title="Profile not saved", severity="error")
            return
        self.notify(f"saved {path}", title=f"Profile {name}")

    def action_load_profile(self) -> None:
        names = list_profiles()
        if not names:
            self.notify("No saved profiles yet (ctrl+s saves one)", severity="warning")
            return
        self.app.push_screen(ProfileScreen("Load profile", names, existing_only=True), self.load_profile)

    def palette_commands(self) -> Iterator[PaletteCommand]:
        yield "profile: save", "Save these settings as a named profile", self.action_save_profile
        for name in list_profiles():
            yield f"profile: load {name}", "Fill the form from this profile", partial(self.load_profile, name)

    def load_profile(self, name: str | None) -> None:
        if not name:
            return
        try:
            self.app.draft.update(load_profile(name))
        except ProfileError as error:
            self.notify(str(error), title="Profile not loaded", severity="error")
            return
        self.app.switch_screen(ParametersScreen())
        self.notify(f"loaded profile {name}")
