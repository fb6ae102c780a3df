"""Step 2: pick a dataset folder; the scan (no model loaded) shows its size and its invalid files by reason."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from acetui.data import DatasetScan, scan_dataset
from acetui.data.scan import FILES_NAMED
from acetui.model.checkpoint import decoder_config
from acetui.tui.screens.parameters import ParametersScreen
from acetui.tui.screens.path_step import PathStepScreen
from acetui.units import format_duration, plural


def scan_text(scan: DatasetScan) -> Text:
    low, high = scan.condition_lengths
    text = Text()
    text.append(plural(len(scan.samples), "valid sample"), style="bold green" if scan.samples else "bold red")
    if scan.problems:
        text.append(f", {len(scan.problems):,} invalid", style="bold red")
    if scan.other_files:
        text.append(f", {plural(len(scan.other_files), 'other file')}", style="dim")
    if scan.samples:
        text.append(
            f"\nduration {format_duration(scan.total_seconds)} total, "
            f"{scan.min_seconds:.1f}-{scan.max_seconds:.1f} s each"
            f"\ncondition length {low}-{high} tokens"
        )
    for note in scan.notes:
        text.append(f"\n{note}", style="yellow")
    return text


def problems_text(scan: DatasetScan, every_name: bool = False) -> Text:
    """Each reason with its file, or with its count and the first files' names, or ``every_name`` (``acetui
    scan`` groups the same way, the largest group first): reasons are long, so a wrapping list rather than a
    table; 500 truncated files take one entry rather than 500, and a reason that explains 3,000 files is not
    buried under the names of another's."""
    text = Text()
    for group in scan.problem_groups():
        text.append(group.label, style="bold")
        text.append(f"  {group.reason}\n", style="red")
        names = group.names(None if every_name else FILES_NAMED)
        if names:
            text.append(f"  {names}\n", style="dim")
    return text


def names_cut(scan: DatasetScan) -> bool:
    """Whether a group has more files than it names by default."""
    return any(len(group.paths) > FILES_NAMED for group in scan.problem_groups())


HELP = (
    "A dataset folder holds preprocessed .pt samples (Side-Step or the official preprocessing), checked here "
    "against the chosen variant without loading the model. Type it on the left and press enter, or browse the tree."
)


class DatasetScreen(PathStepScreen[DatasetScan]):
    """Folders of preprocessed ``.pt`` samples; the scan checks them against the chosen variant's config."""

    CSS_PATH = ["path_step.tcss", "dataset.tcss"]
    TITLE = "2 · Dataset"
    DRAFT_KEY = "dataset_dir"
    PLACEHOLDER = "dataset folder"
    BUSY = "scanning"
    STATUS = "#summary"
    HANDS_ON = ("checkpoint_dir", "variant", "dataset_dir")  # the scan checks samples against the variant
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: parameters", priority=True, tooltip="Use this dataset", id="next"),
        Binding(
            "ctrl+f",
            "every_name",
            "All names",
            priority=True,
            tooltip="Name every invalid file, or a few per reason",
            id="all-names",
        ),  # fmt: skip
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the checkpoint", id="back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.scan: DatasetScan | None = None
        self.every_name = False

    def compose_pane(self) -> ComposeResult:
        yield Static(f"for {self.app.draft.get('variant', '?')}", classes="section", id="variant")
        yield Static(HELP, id="summary")
        with VerticalScroll(id="problems"):
            yield Static(id="problem-list")

    def forget(self) -> None:
        self.scan = None
        self.query_one("#problem-list", Static).update("")
        self.query_one("#variant", Static).update(f"for {self.app.draft.get('variant', '?')}")
        self.refresh_bindings()

    def read(self, path: Path) -> DatasetScan:
        draft = self.app.draft
        config = decoder_config(Path(draft["checkpoint_dir"]), draft["variant"])
        return scan_dataset(
            path,
            condition_width=config.condition_width,
            context_channels=config.context_channels,
            on_file=self.progress(path, "files"),
        )

    def show(self, path: Path, result: DatasetScan) -> None:
        self.scan = result
        if result.samples:  # for the parameters step's memory estimate
            self.app.longest_frames[self.app.scan_key(result.folder)] = max(info.frames for info in result.samples)
        self.status(scan_text(result))
        self.show_problems()
        self.refresh_bindings()
        # as the checkpoint step focuses its table: the path stays as read until a key starts another (on a
        # focused path, a path typed on coming back was appended to the one remembered)
        self.query_one("#problems").focus()

    def show_problems(self) -> None:
        if self.scan is not None:
            self.query_one("#problem-list", Static).update(problems_text(self.scan, self.every_name))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "every_name":
            return self.scan is not None and names_cut(self.scan) or None
        return True

    def action_every_name(self) -> None:
        self.every_name = not self.every_name
        self.show_problems()

    def action_next(self) -> None:
        if self.scan is None or not self.scan.samples:
            self.notify("Choose a dataset folder with at least one valid sample first", severity="warning")
            return
        self.hand_on(dataset_dir=str(self.scan.folder))
        self.app.push_screen(ParametersScreen())
