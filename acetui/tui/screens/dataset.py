"""Step 2: pick a dataset folder; the scan (no model loaded) shows its size and every invalid file with why."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from acetui.data import DatasetScan, scan_dataset
from acetui.errors import AcetuiError
from acetui.model.checkpoint import decoder_config
from acetui.tui.screens.parameters import ParametersScreen
from acetui.tui.screens.path_step import PathStepScreen
from acetui.tui.widgets.path_picker import PathPicker


def scan_text(scan: DatasetScan) -> Text:
    low, high = scan.condition_lengths
    text = Text()
    text.append(f"{len(scan.samples)} valid samples", style="bold green" if scan.samples else "bold red")
    if scan.problems:
        text.append(f", {len(scan.problems)} invalid", style="bold red")
    if scan.other_files:
        text.append(f", {len(scan.other_files)} other files", style="dim")
    if scan.samples:
        text.append(
            f"\nduration {scan.total_seconds:.1f} s total, {scan.min_seconds:.1f}-{scan.max_seconds:.1f} s each"
            f"\ncondition length {low}-{high} tokens"
        )
    for note in scan.notes:
        text.append(f"\n{note}", style="yellow")
    return text


def problems_text(scan: DatasetScan) -> Text:
    """Each invalid file with its full reason (reasons are long, so a wrapping list rather than a table)."""
    text = Text()
    for problem in scan.problems:
        text.append(problem.path.name, style="bold")
        text.append(f"  {problem.reason}\n", style="red")
    return text


class DatasetScreen(PathStepScreen):
    """Folders of preprocessed ``.pt`` samples; the scan checks them against the chosen variant's config."""

    CSS_PATH = ["path_step.tcss", "dataset.tcss"]
    TITLE = "2 · Dataset"
    DRAFT_KEY = "dataset_dir"
    PLACEHOLDER = "dataset folder of .pt files"
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: parameters", priority=True, tooltip="Use this dataset", id="next"),
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the checkpoint", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.scan: DatasetScan | None = None

    def compose_pane(self) -> ComposeResult:
        yield Static(f"for {self.app.draft.get('variant', '?')}", classes="section", id="variant")
        yield Static("Choose a folder: type it and press enter, or browse the tree.", id="summary")
        with VerticalScroll(id="problems"):
            yield Static(id="problem-list")

    @on(PathPicker.Chosen)
    def folder_chosen(self, event: PathPicker.Chosen) -> None:
        self.scan = None
        self.query_one("#summary", Static).update(f"scanning {event.path} ...")
        self.scan_folder(event.path)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False, description="scanning the dataset")
    def scan_folder(self, folder: Path) -> None:
        draft = self.app.draft
        try:
            config = decoder_config(Path(draft["checkpoint_dir"]), draft["variant"])
            scan = scan_dataset(
                folder, condition_width=config.condition_width, context_channels=config.context_channels
            )
        except AcetuiError as error:
            self.app.call_from_thread(self.show_error, str(error))
            return
        self.app.call_from_thread(self.show_scan, scan)

    def show_error(self, message: str) -> None:
        self.query_one("#summary", Static).update(Text(message, style="red"))
        self.query_one("#problem-list", Static).update("")

    def show_scan(self, scan: DatasetScan) -> None:
        self.scan = scan
        if scan.samples:  # for the parameters step's memory estimate
            self.app.longest_frames[str(scan.folder)] = max(info.frames for info in scan.samples)
        self.query_one("#summary", Static).update(scan_text(scan))
        self.query_one("#problem-list", Static).update(problems_text(scan))

    def action_next(self) -> None:
        if self.scan is None or not self.scan.samples:
            self.notify("Choose a dataset folder with at least one valid sample first", severity="warning")
            return
        self.app.draft["dataset_dir"] = str(self.scan.folder)
        self.app.push_screen(ParametersScreen())
