"""Step 1: pick a checkpoints root and a model variant; each variant's problem is shown in place."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from acetui.model.catalog import VariantInfo, list_variants
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.path_step import PathStepScreen
from acetui.tui.widgets.path_picker import PathPicker
from acetui.units import format_bytes

COLUMNS = ("variant", "params", "dtype", "size", "layers×hidden", "files")


def parameter_count(count: int) -> str:
    return f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.1f} M"


def variant_cells(info: VariantInfo) -> tuple[Text, ...]:
    if info.problem:
        return (Text(info.name, style="bold red"), Text("unusable", style="red"), *[Text("")] * 4)
    return (
        Text(info.name, style="bold"),
        Text(parameter_count(info.parameters), justify="right"),
        Text(info.storage_dtype),
        Text(format_bytes(info.size_bytes), justify="right"),
        Text(f"{info.layers}×{info.hidden_size}", justify="right"),
        Text("sharded" if info.sharded else "single"),
    )


def variant_detail(info: VariantInfo) -> Text:
    """Everything about the highlighted variant, so nothing depends on the table's width."""
    if info.problem:
        return Text(f"{info.name}: {info.problem}", style="red")
    text = Text(f"{info.name}", style="bold")
    text.append(f" in {info.folder}\n", style="dim")
    text.append(
        f"{parameter_count(info.parameters)} decoder parameters, {info.storage_dtype}, "
        f"{format_bytes(info.size_bytes)} on disk, {info.layers} layers × {info.hidden_size} hidden, "
        f"{'sharded' if info.sharded else 'single file'}"
    )
    return text


class CheckpointScreen(PathStepScreen):
    """Type or browse to a checkpoints root (e.g. ACE-Step-1.5/checkpoints), then choose a variant."""

    CSS_PATH = ["path_step.tcss", "checkpoint.tcss"]
    TITLE = "1 · Checkpoint"
    DRAFT_KEY = "checkpoint_dir"
    PLACEHOLDER = "checkpoints root folder"
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: dataset", priority=True, tooltip="Use the highlighted variant", id="next"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.variants: list[VariantInfo] = []
        self.root = Path()

    def compose_pane(self) -> ComposeResult:
        yield Static("Variants", classes="section")
        table = DataTable(cursor_type="row", id="variants")
        table.add_columns(*COLUMNS)
        yield table
        yield Static(id="detail")

    @on(PathPicker.Chosen)
    def root_chosen(self, event: PathPicker.Chosen) -> None:
        self.query_one("#detail", Static).update(f"reading {event.path} ...")
        self.load_variants(event.path)

    @work(thread=True, exclusive=True, group="variants", exit_on_error=False, description="reading variants")
    def load_variants(self, root: Path) -> None:
        variants = list_variants(root)
        self.app.call_from_thread(self.show_variants, root, variants)

    def show_variants(self, root: Path, variants: list[VariantInfo]) -> None:
        self.root = root
        self.variants = variants
        table = self.query_one("#variants", DataTable)
        table.clear()
        for info in variants:
            table.add_row(*variant_cells(info), key=info.name)
        wanted = self.app.draft.get("variant")
        names = [info.name for info in variants]
        if wanted in names:
            table.move_cursor(row=names.index(wanted))
        if not variants:
            self.query_one("#detail", Static).update(
                Text(f"{root}: no variant folders (sub-folders with config.json)", style="red")
            )
        else:
            self.describe(table.cursor_row)
            table.focus()

    def describe(self, row: int) -> None:
        if not 0 <= row < len(self.variants):
            return
        self.query_one("#detail", Static).update(variant_detail(self.variants[row]))

    @on(DataTable.RowHighlighted, "#variants")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.describe(event.cursor_row)

    @on(DataTable.RowSelected, "#variants")
    def selected(self) -> None:
        self.action_next()

    def action_next(self) -> None:
        row = self.query_one("#variants", DataTable).cursor_row
        if not 0 <= row < len(self.variants):
            self.notify("Choose a checkpoints root with at least one variant first", severity="warning")
            return
        info = self.variants[row]
        if info.problem:
            self.notify(info.problem, title=f"{info.name} cannot be used", severity="error")
            return
        self.app.draft.update(checkpoint_dir=str(self.root), variant=info.name)
        self.app.push_screen(DatasetScreen())
