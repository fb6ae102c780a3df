"""Text that wraps between folder names as well as at spaces, for the paths the steps and the parameters
screen show."""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text
from textual.content import Content
from textual.css.styles import RulesMap
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual

CHUNK = re.compile(r"[^\s/]*/+\s*|[^\s/]+\s*|\s+")  # up to a path separator or a space, whichever is first


def break_offsets(line: str, width: int) -> list[int]:
    """Where ``line`` breaks to fit ``width`` cells: after a space or a path separator, as late as fits.
    A single name wider than ``width`` is left whole, for the usual wrapping to fold."""
    offsets: list[int] = []
    start = 0
    for chunk in CHUNK.finditer(line):
        if chunk.start() > start and cell_len(line[start : chunk.end()].rstrip()) > width:
            offsets.append(chunk.start())
            start = chunk.start()
    return offsets


class PathWrap(Visual):
    """Text that wraps between folder names as well as at spaces: Textual wraps at spaces only, so a long
    path was cut mid-name ("acest" / "ep-v15-turbo"). ``str()`` is the text, as for Textual's own content."""

    def __init__(self, text: Text | str) -> None:
        self.content = Content.from_rich_text(text if isinstance(text, Text) else Text(text))

    def __str__(self) -> str:
        return self.content.plain

    def wrapped(self, width: int) -> Content:
        """The content with a line break wherever ``width`` needs one."""
        return Content("\n").join(
            piece.rstrip()
            for line in self.content.split("\n", allow_blank=True)
            for piece in line.divide(break_offsets(line.plain, width))
        )

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        return self.wrapped(width).render_strips(width, height, style, options)

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        return self.content.get_optimal_width(rules, container_width)

    def get_height(self, rules: RulesMap, width: int) -> int:
        return self.wrapped(width).get_height(rules, width)
