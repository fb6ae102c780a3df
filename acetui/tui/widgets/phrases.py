"""Short phrases laid out in lines that break only between phrases, so a figure never lands on another line
than what it measures ("top-8 stability" / "0.93") at any terminal width."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

SEPARATOR = "  "


def keep_end(text: Text, width: int) -> Text:
    """``text`` cut at its start to ``width`` cells, an ellipsis marking the cut: a path keeps its file name."""
    if text.cell_len <= width:
        return text
    start, cells = len(text.plain), 1
    while start and cells + cell_len(text.plain[start - 1]) <= width:
        start -= 1
        cells += cell_len(text.plain[start])
    end = text[start:]
    end.pad_left(1, "…")
    return end


def lay_out(phrases: Sequence[Text], width: int) -> list[Text]:
    """As many phrases to a line as fit in ``width``, in order; a phrase wider than a line gets one to itself,
    cut at its start with an ellipsis, so that its end (a path's file name) shows."""
    lines: list[Text] = []
    for phrase in phrases:
        if lines and lines[-1].cell_len + len(SEPARATOR) + phrase.cell_len <= width:
            lines[-1].append(SEPARATOR).append_text(phrase)
        else:
            lines.append(phrase.copy())
    return [keep_end(line, max(width, 1)) for line in lines]


class Phrases(Widget):
    """Set ``phrases``; the widget is as high as its lines at its width."""

    DEFAULT_CSS = """
    Phrases { height: auto; }
    """

    phrases: reactive[tuple[Text, ...]] = reactive((), layout=True)

    def render(self) -> Text:
        text = Text("\n").join(lay_out(self.phrases, self.content_size.width))
        text.no_wrap = True
        return text

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(lay_out(self.phrases, width))
