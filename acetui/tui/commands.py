"""Command palette entries for the screen it was opened on: every action its footer offers, under the footer's
name, plus the screen's ``export:``, ``view:`` and ``profile:`` commands.

A screen offers extra commands by defining ``palette_commands()`` returning (title, help, callback) tuples;
its key bindings need nothing more, so an action with a key is always in the palette too."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

PaletteCommand = tuple[str, str, Callable[[], object]]


def binding_commands(screen: Screen) -> Iterator[PaletteCommand]:
    """The screen's shown and enabled bindings (its own and its focused widgets', not the app's), one per
    action: what the footer lists, found by the same words."""
    app = screen.app
    offered: set[str] = set()
    for active in screen.active_bindings.values():
        binding = active.binding
        if not active.enabled or not binding.show or binding.system or active.node is app:
            continue
        if binding.action in offered:
            continue
        offered.add(binding.action)
        help_text = f"{binding.tooltip or binding.description} (key {app.get_key_display(binding)})"
        yield binding.description, help_text, partial(app.run_action, binding.action, active.node)


class ScreenCommands(Provider):
    def commands(self) -> Iterable[PaletteCommand]:
        offer = getattr(self.screen, "palette_commands", None)
        if offer is not None:
            yield from offer()
        yield from binding_commands(self.screen)

    async def discover(self) -> Hits:
        for title, help_text, callback in self.commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self.commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
