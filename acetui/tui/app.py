"""The application: holds the settings being edited (``draft``) and opens the first screen.

``make_app`` is the one factory, used by the CLI and the tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from acetui.errors import AcetuiError
from acetui.estimate import EstimateRequest, EstimateResult
from acetui.estimate.ownership import check_not_running
from acetui.profiles import ProfileError, load_last, load_profile, save_last, settings_of
from acetui.tui.commands import ScreenCommands
from acetui.tui.messages import RunRecordChanged
from acetui.tui.screens.checkpoint import CheckpointScreen
from acetui.tui.screens.confirm import ConfirmScreen
from acetui.tui.screens.dataset import DatasetScreen
from acetui.tui.screens.history import HistoryScreen
from acetui.tui.screens.keys import KeysScreen, screen_keys
from acetui.tui.screens.parameters import ParametersScreen
from acetui.tui.screens.results import ResultsScreen
from acetui.tui.screens.run import RunScreen

QUIT_QUESTION = "quit-question"
QUIT_HELP = "Quit acetui; while a run is running, asks first (the run stops, its partial result is kept)"
QUIT_TEXT = (
    "A run is still running. Quit anyway? It stops after the current batch and its partial result is kept "
    "(resume it from History or with acetui resume)."
)
STEPS = ((CheckpointScreen, ()), (DatasetScreen, ("checkpoint_dir", "variant")), (ParametersScreen, ("dataset_dir",)))


class AcetuiApp(App[list[str]]):
    """Steps are screens pushed in order (escape goes back); history is reachable from every screen. The app
    returns the ids of the runs quitting stopped, for the CLI to say how to resume them."""

    TITLE = "acetui"
    SUB_TITLE = "ACE-Step 1.5 attention sensitivity"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ScreenCommands}
    BINDINGS = [
        Binding("ctrl+g", "history", "History", tooltip="Past runs: open, compare, resume", id="history"),
        # priority: dialogs (modal) keep app keys from their questions, and f1 answers there too
        Binding(
            "f1", "show_keys", "Keys", show=False, priority=True, tooltip="Every key here and what it does", id="keys"
        ),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip=QUIT_HELP, id="quit"),
    ]

    def __init__(self, draft: dict[str, Any], *, open_parameters: bool, problems: Iterable[str] = ()) -> None:
        super().__init__()
        self.draft = draft
        self.score = str(draft.get("score", "grad-norm"))
        self.open_parameters = open_parameters
        self.problems = list(problems)
        # the longest valid sample of a dataset checked against a model, once scanned (``scan_key``)
        self.longest_frames: dict[tuple[str, str, str], int] = {}

    def scan_key(self, dataset: str | Path) -> tuple[str, str, str]:
        """What a dataset's scan depends on: the folder, and the model its samples were checked against (a
        profile loaded later may name another, for which the same files may all be invalid)."""
        return str(dataset), str(self.draft.get("checkpoint_dir")), str(self.draft.get("variant"))

    def action_show_keys(self) -> None:
        """F1, as most terminal apps have it: every key of the screen in front, with what it does; on the keys,
        f1 closes them."""
        if isinstance(self.screen, KeysScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(KeysScreen(self.screen.TITLE or "this dialog", screen_keys(self.screen)))

    def on_mount(self) -> None:
        for problem in self.problems:
            self.notify(problem, title="Settings not loaded", severity="error", timeout=15)
        for screen, needs in STEPS:
            if any(key not in self.draft for key in needs) or (
                screen is not CheckpointScreen and not self.open_parameters
            ):
                break
            self.push_screen(screen())

    def remember(self, request: EstimateRequest) -> None:
        """The last used settings, restored at the next start. The run goes ahead without them when they
        cannot be saved (a config folder that cannot be written, a path TOML cannot hold), and says so."""
        try:
            save_last(settings_of(request))
        except AcetuiError as error:
            self.notify(str(error), title="Settings not remembered", severity="warning")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """History is offered everywhere but on the history screen itself."""
        return action != "history" or not isinstance(self.screen, HistoryScreen)

    def action_history(self) -> None:
        self.push_screen(HistoryScreen())

    def running_screens(self) -> list[RunScreen]:
        """The Run screens whose estimator is still working (some may not know their run id yet)."""
        return [screen for screen in self.screen_stack if isinstance(screen, RunScreen) and screen.running]

    def running_runs(self) -> set[str]:
        """The run ids an estimator of this app is working on: quitting stops them, and the CLI names them."""
        return {screen.run_id for screen in self.running_screens() if screen.run_id is not None}

    def resume_run(self, run: EstimateResult) -> None:
        """Continue a partial run on a new Run screen (History and Results offer it), or say why not: one run
        at a time (a second would take the only Run screen's place, so the first could not be seen or stopped),
        and none that another process (a headless acetui) is writing."""
        if not run.partial:
            self.notify(f"run {run.run_id} is complete: nothing to resume", severity="warning")
            return
        running = self.running_screens()
        if running:
            notice = f"{running[0].label} is running now: one run at a time ({self.way_back(running[0])})"
            self.notify(notice, severity="warning")
            return
        try:
            check_not_running(run)
        except AcetuiError as error:
            self.notify(str(error), severity="warning")
            return
        self.push_screen(RunScreen(run.request, resume=run))

    def way_back(self, screen: Screen) -> str:
        """The keys from the screen shown to ``screen``, lower in the stack: escape once per screen above it."""
        above = len(self.screen_stack) - 1 - self.screen_stack.index(screen)
        return "esc goes back to it" if above == 1 else f"esc {above} times goes back to it"

    async def action_quit(self) -> None:
        """Quit at once, unless a run is running: then ask first (ctrl+q again while asked quits), in place of
        any question already open (e.g. the Run screen's "Stop the run?")."""
        if not self.running_screens() or self.screen.id == QUIT_QUESTION:
            self.leave()
            return
        if isinstance(self.screen, ConfirmScreen):  # one question at a time: quitting replaces the open one
            await self.screen.dismiss(False)
        self.push_screen(ConfirmScreen(QUIT_TEXT, id=QUIT_QUESTION), self.confirm_quit)

    def confirm_quit(self, leave: bool | None) -> None:
        """Leaving unmounts the Run screen, which stops its run as interrupted (the record keeps every batch)."""
        if leave:
            self.leave()

    def leave(self) -> None:
        """Exit with the ids of the runs still running: unmounting their Run screens stops them."""
        self.exit(sorted(self.running_runs()))

    @on(RunRecordChanged)
    def run_record_changed(self, message: RunRecordChanged) -> None:
        """Route a run's progress to the History screens, so their row for it follows the run, and to the
        Results screens, which re-read it when they show that run."""
        for screen in self.screen_stack:
            if isinstance(screen, (HistoryScreen, ResultsScreen)):
                screen.reload_run(message.run_id)

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Textual's Screenshot command saves to ~/Downloads, which servers seldom have (it then says only
        "Failed to save screenshot"): by default it goes to the current folder, as exports do, and Textual's
        notice names its full path."""
        return super().deliver_screenshot(filename, path or str(Path.cwd()), time_format)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's, with our Quit: Textual's help says it quits at once, ours asks first during a run."""
        for command in super().get_system_commands(screen):
            yield command._replace(help=QUIT_HELP) if command.callback == self.action_quit else command
        if not isinstance(screen, HistoryScreen):
            yield SystemCommand("view: history", "Past runs: open, compare, resume", self.action_history)


def make_app(request: EstimateRequest | None = None, profile: str | None = None) -> AcetuiApp:
    """``request`` (e.g. the demo) or ``profile`` open prefilled at the parameters step; otherwise the
    last used settings prefill the checkpoint step. A broken profile or settings file is reported, not fatal
    (the CLI refuses a profile name that is not saved before it gets here)."""
    draft, problem = load_last()
    problems = [problem] if problem else []
    open_parameters = request is not None
    if profile is not None:
        try:
            draft = {**draft, **load_profile(profile)}
            open_parameters = True
        except ProfileError as error:
            problems.append(str(error))
    if request is not None:
        draft = settings_of(request)
    return AcetuiApp(draft, open_parameters=open_parameters, problems=problems)
