"""Command palette entries for the screen it was opened on: ``export:``, ``view:`` and ``profile:`` commands.

A screen offers commands by defining ``palette_commands()`` returning (title, help, callback) tuples."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.command import DiscoveryHit, Hit, Hits, Provider

PaletteCommand = tuple[str, str, Callable[[], object]]


class ScreenCommands(Provider):
    def commands(self) -> Iterable[PaletteCommand]:
        offer = getattr(self.screen, "palette_commands", None)
        return offer() if offer is not None else ()

    async def discover(self) -> Hits:
        for title, help_text, callback in self.commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self.commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
