"""Step 3: the run settings, a memory and batch-count hint, and named profiles to load and save."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Select, Static
from textual.worker import Worker, WorkerState

from acetui.data import scan_dataset
from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest
from acetui.estimate.devices import probe_cuda_devices
from acetui.estimate.memory import MemoryNeed, activations_fit, memory_need, memory_stats
from acetui.estimate.request import DTYPES, REQUEST_DEFAULTS, resolve_device
from acetui.model.catalog import describe_variant
from acetui.model.config import DecoderConfig
from acetui.model.decoder import ATTENTION_KINDS, ATTENTION_PROJECTIONS, MLP_PROJECTIONS
from acetui.model.variants import CONFIG_FILE, resolve_variant
from acetui.profiles import (
    ProfileError,
    list_profiles,
    load_profile,
    missing_folders,
    save_profile,
    settings_of,
)
from acetui.tui.commands import PaletteCommand
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.profile import ProfileScreen
from acetui.tui.screens.run import RunScreen
from acetui.tui.widgets.path_wrap import PathWrap
from acetui.tui.widgets.settings_form import FIELD_KEYS, SettingsForm
from acetui.units import format_bytes

PROFILE_NOT_SAVED = "Profile not saved"


def memory_hint(free: tuple[bool, int] | None, need: MemoryNeed | None) -> str:
    """The free memory of ``(is_cuda, free bytes)``, then whether the longest batch fits it and what to do
    if not, a line each."""
    if free is None:
        return "memory: free amount unknown"
    on_cuda, available = free
    memory = f"memory: {format_bytes(available)} {'VRAM' if on_cuda else 'RAM'} free"
    if need is None:
        return memory
    if need.weights >= available:
        return (
            f"{memory}\nthe weights alone do not fit: they need {format_bytes(need.weights)}; "
            "pick another device or a smaller variant"
        )
    needs = f"the longest batch needs ~{format_bytes(need.total)} ({format_bytes(need.weights)} weights)"
    if not activations_fit(need.activations, available - need.weights, on_cuda):
        remedy = "auto checkpointing recomputes activations (~1.4x slower), or set crop frames"
        return f"{memory}\ntoo big as is: {needs}; {remedy}"
    return f"{memory}\nfits: {needs}"


def batch_advice(free: tuple[bool, int] | None) -> str:
    """How many batches to start with. Batches cost time here, not memory: gradient norms are accumulated,
    so memory is set by sample length."""
    if free is None:
        return "batches: start with 3-5"
    if free[0]:
        return "batches: 5-10, or auto (more batches take longer but need no more memory)"
    return "batches: 3-5, or auto with a low max (on a CPU a real model takes minutes per batch)"


def batches_hint(free: tuple[bool, int] | None, need: MemoryNeed | None = None) -> str:
    """The hint under the form: the free memory and what fits, then the batch advice, a line each."""
    return f"{memory_hint(free, need)}\n{batch_advice(free)}"


def within(reason: str, folders: Iterable[str]) -> str:
    """``reason`` with its paths named from ``folders`` (those the screen's heading names): a broken file's
    full path, after the heading's, did not fit under the form at 80x24."""
    for folder in folders:
        reason = reason.replace(os.path.join(Path(folder), ""), "")
    return reason


def probe_model(draft: dict[str, Any]) -> tuple[DecoderConfig, int]:
    """The chosen variant's config and decoder parameter count, from config.json and weight headers;
    AcetuiError saying why not (a missing folder first, in the words a profile load uses)."""
    if "checkpoint_dir" not in draft or "variant" not in draft:
        raise AcetuiError("no checkpoint chosen")
    missing = missing_folders({"checkpoint_dir": draft["checkpoint_dir"]})
    if missing:
        raise AcetuiError(missing)
    folder = resolve_variant(Path(draft["checkpoint_dir"]), draft["variant"])
    info = describe_variant(folder)
    if info.problem:
        raise AcetuiError(info.problem)
    return DecoderConfig.from_json_file(folder / CONFIG_FILE), info.parameters


def longest_sample_frames(folder: str, config: DecoderConfig, known: int | None) -> int:
    """The dataset's longest valid sample: ``known`` from the dataset step's scan for this model, or scanned
    here when that step was skipped (the demo, last settings, a profile); AcetuiError saying why there is none."""
    if known is not None:
        return known
    missing = missing_folders({"dataset_dir": folder})
    if missing:
        raise AcetuiError(missing)
    scan = scan_dataset(Path(folder), condition_width=config.condition_width, context_channels=config.context_channels)
    if not scan.samples:
        raise AcetuiError(f"no valid samples in dataset folder {folder}")
    return max(info.frames for info in scan.samples)


def scored_units(config: DecoderConfig, modules: str, granularity: str) -> tuple[int, str]:
    """How many units a run ranks, and what they are called: the projections the engine hooks
    (``attention_projection_names``), or their ``layers.N.<kind>`` groups at layer granularity."""
    mlp = modules == "attention+mlp"
    if granularity == "layer":
        return config.num_hidden_layers * (len(ATTENTION_KINDS) + mlp), "layer groups"
    per_layer = len(ATTENTION_KINDS) * len(ATTENTION_PROJECTIONS) + (len(MLP_PROJECTIONS) if mlp else 0)
    return config.num_hidden_layers * per_layer, "modules"


def auto_device() -> str:
    """The option ``auto`` runs on, by the engine's rule (``resolve_device``): ``cuda:0`` or ``cpu``."""
    device = resolve_device("auto")
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


def probe_devices() -> tuple[list[tuple[str, str]], dict[str, tuple[bool, int]], str]:
    """(label, value) options, (is_cuda, free bytes) per option, and why the GPUs' free memory is unknown
    if it is. The GPUs are asked in a child process (``probe_cuda_devices``): the app keeps no CUDA context
    on GPUs it does not run on. ``auto`` says which device it stands for."""
    cpu = (False, memory_stats(torch.device("cpu")).free)
    options, free, problem, names = [], {"cpu": cpu}, "", {"cpu": "cpu"}
    try:
        devices = {f"cuda:{device.index}": device for device in probe_cuda_devices()}
    except RuntimeError as error:
        devices, problem = {}, str(error)
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        name = f"cuda:{index}"
        device = devices.get(name)
        if device is None:  # no name either: asking for it here would start CUDA in the app after all
            options.append((f"{name} (free memory unknown)", name))
            names[name] = name
        else:
            options.append((f"{name} {device.name} ({format_bytes(device.free)} free)", name))
            free[name], names[name] = (True, device.free), f"{name} {device.name}"
    options.append((f"cpu ({format_bytes(cpu[1])} RAM free)", "cpu"))
    auto = auto_device()
    if auto in free:
        free["auto"] = free[auto]
    return [(f"auto ({names.get(auto, auto)})", "auto"), *options], free, problem


def resolves_to_cuda(device: str) -> bool:
    """Whether the device option runs on a GPU (``auto`` by ``auto_device``'s rule)."""
    return (auto_device() if device == "auto" else device).startswith("cuda")


def form_values(draft: dict[str, Any], score: str) -> dict[str, Any]:
    """What the form shows: request defaults overlaid with the draft."""
    values = {key: value for key, value in REQUEST_DEFAULTS.items() if key in FIELD_KEYS}
    values.update({key: value for key, value in draft.items() if key in values})
    values["batches"] = "auto" if draft.get("auto_batches") else values["batches"]
    values["score"] = score
    return values


class ParametersScreen(Screen):
    CSS_PATH = "parameters.tcss"
    TITLE = "3 · Parameters"
    AUTO_FOCUS = "#batches"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True, tooltip="Start the estimate", id="run"),
        Binding("ctrl+s", "save_profile", "Save profile", priority=True, id="profile-save"),
        Binding("ctrl+o", "load_profile", "Load profile", priority=True, id="profile-load"),
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the dataset", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.free: dict[str, tuple[bool, int]] = {}
        self.model: tuple[DecoderConfig, int] | None = None
        self.unusable = ""  # why the checkpoint or dataset cannot run (and has no memory estimate), if so
        self.device_problem = ""  # why the GPUs' free memory is unknown, when it is
        self.devices_ready = False

    def compose(self) -> ComposeResult:
        draft = self.app.draft
        yield Header()
        with VerticalScroll(can_focus=False):
            yield Static(PathWrap(self.source_text()), id="source")
            yield SettingsForm(form_values(draft, self.app.score), id="form")
            yield Static(id="top-k-warning")
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
        self.query_one(SettingsForm).show_gpu_settings(resolves_to_cuda(str(self.app.draft.get("device", "auto"))))
        self.find_devices()

    @on(Select.Changed, "#device")
    def device_changed(self, event: Select.Changed) -> None:
        self.query_one(SettingsForm).show_gpu_settings(resolves_to_cuda(str(event.value)))

    def on_screen_resume(self) -> None:
        """Back from a run the last-used field is focused again, with its text selected so that typing
        replaces it (Input selects on focus, but a screen resuming does not focus anew)."""
        if isinstance(self.focused, Input):
            self.focused.select_all()

    @work(thread=True, exclusive=True, group="devices", exit_on_error=False, description="listing devices")
    def find_devices(self):
        model, longest, problem = None, None, ""
        try:
            model = probe_model(self.app.draft)
            folder = str(self.app.draft.get("dataset_dir"))
            longest = longest_sample_frames(folder, model[0], self.app.longest_frames.get(self.app.scan_key(folder)))
        except AcetuiError as error:
            problem = str(error)
        return *probe_devices(), model, longest, problem

    @on(Worker.StateChanged)
    def devices_found(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "devices":
            return
        if event.state == WorkerState.SUCCESS:
            options, self.free, self.device_problem, self.model, longest, self.unusable = event.worker.result
            if longest is not None:
                self.app.longest_frames[self.app.scan_key(self.app.draft.get("dataset_dir", ""))] = longest
            self.devices_ready = True
            self.query_one(SettingsForm).set_devices(options, self.app.draft.get("device", "auto"))
            self.show_hint()
            self.check_top_k()
        elif event.state == WorkerState.ERROR:
            self.query_one("#hint", Static).update(Text(f"cannot list devices: {event.worker.error}", style="red"))

    @on(Select.Changed, "#device")
    @on(Select.Changed, "#dtype")
    @on(Input.Changed, "#batch-size")
    @on(Input.Changed, "#crop-frames")
    def show_hint(self) -> None:
        """Why the run cannot start, alone: the memory and batch advice beside it ran past 80x24, cutting
        the reason off under a scrollbar that no key reaches. It wraps between folder names of its path."""
        if not self.devices_ready:
            return
        hint = PathWrap(Text(f"cannot run: {self.reason()}", style="bold red")) if self.unusable else self.advice()
        self.query_one("#hint", Static).update(hint)

    def reason(self) -> str:
        """Why the run cannot start, its paths from the folders named above."""
        draft = self.app.draft
        return within(self.unusable, (str(draft[key]) for key in ("checkpoint_dir", "dataset_dir") if key in draft))

    def advice(self) -> Text:
        """The free memory of the chosen device, whether the longest batch fits it, and the batch advice."""
        device = str(self.query_one("#device", Select).value)
        free = self.free.get(device)
        need = self.longest_batch_need(on_cuda=free[0] if free else resolves_to_cuda(device))
        hint = Text(batches_hint(free, need))
        if free is None and self.device_problem:
            hint.append(f"\n{self.device_problem}")
        return hint

    @on(Input.Changed, "#top-k")
    @on(Select.Changed, "#modules")
    @on(Select.Changed, "#granularity")
    def check_top_k(self) -> None:
        """A top-k above the units ranked is capped by the engine; say so, since a capped top-k is the
        whole ranking and its stability of 1.00 means nothing."""
        text = self.query_one("#top-k", Input).value.strip()
        message = ""
        if self.model is not None and text.isdigit():
            modules = str(self.query_one("#modules", Select).value)
            count, unit = scored_units(self.model[0], modules, str(self.query_one("#granularity", Select).value))
            if int(text) > count:
                message = f"top-k {text} exceeds the {count} {unit} scored: it will be capped at {count}"
        warning = self.query_one("#top-k-warning", Static)
        warning.update(message)
        warning.display = bool(message)

    def longest_batch_need(self, *, on_cuda: bool) -> MemoryNeed | None:
        """Memory for the dataset's longest sample as the form's dtype, batch size and crop say."""
        longest = self.app.longest_frames.get(self.app.scan_key(self.app.draft.get("dataset_dir", "")))
        if self.model is None or longest is None:
            return None
        config, parameters = self.model
        dtype_name = str(self.query_one("#dtype", Select).value)
        dtype = DTYPES.get(dtype_name, torch.bfloat16 if on_cuda else torch.float32)
        crop = self.query_one("#crop-frames", Input).value.strip()
        frames = min(longest, int(crop)) if crop.isdigit() and int(crop) >= 2 else longest
        size = self.query_one("#batch-size", Input).value.strip()
        batch_size = int(size) if size.isdigit() and int(size) > 0 else 1
        return memory_need(config, parameters, frames, batch_size, dtype)

    def request(self, refusal: str = "Cannot run") -> EstimateRequest | None:
        """The form as a request, or None after telling the user what is wrong under the title ``refusal``
        (what the invalid form stops: the run, or saving the profile)."""
        try:
            values = self.query_one(SettingsForm).values()
            self.app.score = values["score"]
            self.app.draft.update(values)
            return EstimateRequest.from_dict(self.app.draft)
        except (AcetuiError, KeyError) as error:
            self.notify(str(error), title=refusal, severity="error")
            return None

    def after_typing(self, action: Callable[[], object]) -> None:
        """Run ``action`` once the focused field has taken the keys typed before it: a priority binding's action
        runs as its key arrives, while keys sent just before (type-ahead, or keys that come together over SSH)
        still wait in the field's queue, so ``30`` typed and ctrl+r at once ran 3 batches."""
        (self.focused or self).call_later(action)

    def action_run(self) -> None:
        self.after_typing(self.start_run)

    def start_run(self) -> None:
        if not self.devices_ready:
            self.notify("Still checking devices; try again in a moment", severity="warning")
            return
        request = self.request()
        if request is None:
            return
        if self.unusable:
            self.refuse_to_run()
            return
        self.app.remember(request)
        self.app.push_screen(RunScreen(request))

    def refuse_to_run(self) -> None:
        """The checkpoint or dataset is known to be unusable, so the run would fail at once: say why instead,
        and check again, so that once the folder is fixed the next ctrl+r runs."""
        self.notify(self.unusable, title="Cannot run", severity="error")
        self.find_devices()

    def action_save_profile(self) -> None:
        self.after_typing(self.ask_profile_name)

    def ask_profile_name(self) -> None:
        if self.request(refusal=PROFILE_NOT_SAVED) is not None:
            self.app.push_screen(ProfileScreen("Save profile as", list_profiles()), self.save_profile)

    def save_profile(self, name: str | None) -> None:
        """Save under ``name``, asking first when that replaces a saved profile."""
        if not name:
            return
        if name in list_profiles():
            question = f"Replace the saved profile {name}?"
            self.app.push_screen(ConfirmScreen(question), lambda yes: self.write_profile(name) if yes else None)
            return
        self.write_profile(name)

    def write_profile(self, name: str) -> None:
        try:
            path = save_profile(name, settings_of(EstimateRequest.from_dict(self.app.draft)))
        except AcetuiError as error:
            self.notify(str(error), title=PROFILE_NOT_SAVED, severity="error")
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
            settings = load_profile(name)
        except ProfileError as error:
            self.notify(str(error), title="Profile not loaded", severity="error")
            return
        self.app.draft.update(settings)
        self.app.score = settings["score"]
        self.app.switch_screen(ParametersScreen())
        missing = missing_folders(self.app.draft)
        if missing:
            self.notify(f"profile {name}: {missing}", severity="warning", timeout=15)
        else:
            self.notify(f"loaded profile {name}")
