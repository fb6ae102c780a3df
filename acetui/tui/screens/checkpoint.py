"""Step 1: pick a checkpoints root and a model variant; each variant's problem is shown in place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from acetui.errors import ModelLoadError
from acetui.folders import check_folder
from acetui.model.catalog import VariantInfo, list_variants
from acetui.model.variants import CONFIG_FILE, short_name
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.path_step import PathStepScreen
from acetui.tui.widgets.path_wrap import PathWrap
from acetui.units import format_bytes

COLUMNS = ("variant", "params", "dtype", "size", "layers×hidden", "files")  # most wanted first
Row = tuple[str, tuple[Text, ...]]  # a variant's name (the row key) and its cells


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


def columns_that_fit(widths: Sequence[int], room: int) -> int:
    """How many leading columns of these widths fit ``room`` cells; the name column shows whatever the room."""
    used = 0
    for count, width in enumerate(widths):
        used += width
        if used > room:
            return max(count, 1)
    return len(widths)


class VariantTable(DataTable):
    """One row per variant, with as many leading columns as its width shows (the detail line below says
    everything), so no column is ever cut to a stub like "fi" for files."""

    def __init__(self, *, id: str) -> None:
        super().__init__(cursor_type="row", id=id)
        self.listed: list[Row] = []

    def column_widths(self) -> list[int]:
        """Each column's widest cell or header, with the cell padding on both sides."""
        return [
            max([cell_len(header), *(cells[index].cell_len for _, cells in self.listed)]) + 2 * self.cell_padding
            for index, header in enumerate(COLUMNS)
        ]

    def fitting(self) -> int:
        return columns_that_fit(self.column_widths(), self.scrollable_content_region.width)

    def list_rows(self, rows: list[Row]) -> None:
        self.listed = rows
        self.build(self.fitting())

    def build(self, count: int) -> None:
        """Rows again with ``count`` columns, the cursor kept on its row."""
        row = self.cursor_row
        self.clear(columns=True)
        self.add_columns(*COLUMNS[:count])
        for name, cells in self.listed:
            self.add_row(*cells[:count], key=name)
        self.move_cursor(row=row)

    def on_resize(self) -> None:
        if (count := self.fitting()) != len(self.columns):
            self.build(count)


HELP = (
    "A checkpoints root is the folder holding the acestep-v15-<variant> folders, e.g. ACE-Step-1.5/checkpoints. "
    "Type it on the left and press enter, or browse the tree (backspace goes up a folder).\n\n"
    "No model at hand? `acetui demo` opens this app on a tiny demo checkpoint and dataset."
)


@dataclass(frozen=True)
class RootListing:
    """The variants of a checkpoints root; ``note`` says why ``root`` is not the folder that was picked."""

    root: Path
    variants: list[VariantInfo]
    wanted: str | None = None  # the variant to highlight when the pick was a variant folder
    note: str = ""


def read_root(path: Path) -> RootListing:
    """The variants under ``path``; a variant folder picked by mistake lists its parent's, highlighting it."""
    check_folder(path, ModelLoadError)
    if (path / CONFIG_FILE).is_file():
        root = path.absolute().parent
        note = f"{path} is a variant folder; its parent is the checkpoints root"
        return RootListing(root, list_variants(root), short_name(path.name), note)
    variants = list_variants(path)
    if not variants:
        raise ModelLoadError(f"{path}: no variant folders (sub-folders with {CONFIG_FILE})")
    return RootListing(path, variants)


class CheckpointScreen(PathStepScreen[RootListing]):
    """Type or browse to a checkpoints root (e.g. ACE-Step-1.5/checkpoints), then choose a variant."""

    CSS_PATH = ["path_step.tcss", "checkpoint.tcss"]
    TITLE = "1 · Checkpoint"
    DRAFT_KEY = "checkpoint_dir"
    PLACEHOLDER = "checkpoints root"
    STATUS = "#detail"
    HANDS_ON = ("checkpoint_dir", "variant")
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: dataset", priority=True, tooltip="Use the highlighted variant", id="next"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.variants: list[VariantInfo] = []
        self.root = Path()

    def compose_pane(self) -> ComposeResult:
        yield Static("Variants", classes="section", id="heading")
        yield VariantTable(id="variants")
        yield Static(HELP, id="detail")

    def forget(self) -> None:
        self.variants = []
        self.query_one(VariantTable).list_rows([])
        self.query_one("#heading", Static).update("Variants")

    def read(self, path: Path) -> RootListing:
        return read_root(path)

    def show(self, path: Path, result: RootListing) -> None:
        self.root = result.root
        self.variants = result.variants
        if result.note:
            self.query_one("#heading", Static).update(PathWrap(Text(result.note, style="yellow")))
        table = self.query_one(VariantTable)
        table.list_rows([(info.name, variant_cells(info)) for info in result.variants])
        wanted = result.wanted or self.app.draft.get("variant")
        names = [info.name for info in result.variants]
        if wanted in names:
            table.move_cursor(row=names.index(wanted))
        self.describe(table.cursor_row)
        table.focus()

    def describe(self, row: int) -> None:
        if not 0 <= row < len(self.variants):
            return
        self.status(variant_detail(self.variants[row]))

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
        self.hand_on(checkpoint_dir=str(self.root), variant=info.name)
        self.app.push_screen(DatasetScreen())
