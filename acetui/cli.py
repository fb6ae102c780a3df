"""The ``acetui`` command: the TUI by default; ``estimate``, ``resume``, ``runs``, ``delete``, ``show``,
``compare``, ``variants``, ``scan``, ``profiles``, ``demo`` and ``locate``.

Every user-facing failure exits non-zero with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from acetui import paths
from acetui.arguments import PROFILE_COMMANDS, build_parser
from acetui.errors import AcetuiError, first_line
from acetui.estimate import EstimateRequest, EstimateResult, Estimator
from acetui.estimate.distributed import check_process_count, world_from_env
from acetui.estimate.ownership import check_incomplete, check_not_running, run_owner_alive
from acetui.estimate.request import resolve_device
from acetui.folders import nearest_existing
from acetui.history import (
    batches_done,
    delete_run,
    find_run,
    history_record,
    list_runs,
    load_record,
    runs_table,
    shown_status,
)
from acetui.model.variants import own_folder
from acetui.profiles import (
    check_profile_ranges,
    delete_profile,
    list_profiles,
    load_profile,
    profiles_table,
    save_new_profile,
    saved_profile,
    settings_of,
)
from acetui.progress import (
    ConsoleReporter,
    check_outputs,
    counted_on_terminal,
    ignored_options,
    print_ranking,
    tell,
    wants_outputs,
    write_outputs,
)
from acetui.units import plural

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports of a command whose output pipe closed
DEBUG_VARIABLE = "ACETUI_DEBUG"
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
# Request settings an ``estimate`` flag of the same name sets (the batch count aside: one flag, two settings).
FLAG_SETTINGS = (
    "checkpoint_dir",
    "variant",
    "dataset_dir",
    "top_k",
    "granularity",
    "score",
    "seed",
    "batch_size",
    "device",
    "dtype",
    "timestep_focus",
    "modules",
    "crop_frames",
    "activation_checkpointing",
    "cuda_graphs",
    "strict",
    "max_batches",
    "stability_target",
)


def request_from_args(args: argparse.Namespace) -> EstimateRequest:
    """Profile values first, then every flag the user actually gave; a profile's value that no flag
    replaces is checked on its own first, so that an out-of-range one names the profile's file."""
    given = {key: getattr(args, key, None) for key in FLAG_SETTINGS}
    given = {key: value for key, value in given.items() if value is not None}
    if args.batches == "auto":
        given["auto_batches"] = True
    elif args.batches is not None:
        given["batches"], given["auto_batches"] = int(args.batches), False
    values: dict[str, Any] = {}
    if args.profile is not None:
        values = load_profile(args.profile)
        check_profile_ranges(args.profile, {key: value for key, value in values.items() if key not in given})
    values.update(given)
    folder = own_folder(values.get("variant", ""))
    if "checkpoint_dir" not in values and folder is not None:  # the root it is in stands in for one
        values["checkpoint_dir"], values["variant"] = str(folder.parent), str(folder)
    missing = [
        flag
        for flag, key in (
            ("--checkpoint-dir", "checkpoint_dir"),
            ("--model-variant", "variant"),
            ("--dataset-dir", "dataset_dir"),
        )
        if key not in values
    ]
    if missing:
        raise AcetuiError(f"missing {', '.join(missing)} (give the flag or a --profile that sets it)")
    return EstimateRequest.from_dict(values)


def run_headless(request: EstimateRequest, args: argparse.Namespace, resume: EstimateResult | None = None) -> int:
    """Run with a progress line on stderr; signals stop the run after the current batch and keep it."""
    check_outputs(request, args)  # an existing map or a bad rank budget fails before the run, not after it
    world = world_from_env()
    for note in ignored_options(request, args) if world.main else ():
        _say(f"warning: {note}")
    reporter = ConsoleReporter(quiet=args.quiet or not world.main)
    if world.distributed:
        from acetui.estimate.distributed import distributed_estimator

        estimator = distributed_estimator(
            request, world, on_event=reporter, resume=resume, record_dir=paths.app_dirs().runs
        )
    else:
        estimator = Estimator(request, on_event=reporter, resume=resume, record_dir=paths.app_dirs().runs)
    previous = {}
    received: list[int] = []  # the first stop signal gives the exit code, 128 + its number as a shell's kill

    def stop(signum, frame) -> None:
        if estimator.stopping:
            _abort(128 + signum)
        received.append(signum)
        estimator.cancel("interrupted")
        when = "after the current batch" if reporter.last_batch is not None else "the setup"
        reporter.note(f"{signal.Signals(signum).name}: stopping {when} (again to abort)")

    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:  # nohup's ignored SIGHUP stays
            previous[name] = signal.signal(number, stop)
    try:
        result = estimator.run()
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
        if world.distributed:
            from acetui.estimate.distributed import shutdown

            shutdown()
    shown = _report(result, args) if result is not None and world.main and result.included_batches else 0
    record = None if result is None else estimator.record_path(result.run_id)
    hopeless = result is not None and result.status == "failed" and bool(result.batches) and not result.included_batches
    stopped = 128 + received[0] if received else EXIT_INTERRUPTED
    if result is None and estimator.stopping:  # while setting up: nothing ran, a resumed run is as it was
        if resume is not None:
            _announce_resume(resume.run_id, "not resumed")
        return stopped
    return _finish(result, stopped, announce=record is not None and record.is_file() and not hopeless) or shown


def _abort(code: int) -> NoReturn:
    """A second stop signal: leave at once. Raising KeyboardInterrupt from the handler unwound through
    whatever was running (torch, a finaliser) and could end in a traceback; every finished batch is in the
    record already (written atomically), and the OS releases the run's lock."""
    _say("aborted")
    os._exit(code)


def _finish(result: EstimateResult | None, stopped: int, announce: bool) -> int:
    """Exit code for how the run ended (``stopped`` for a run a signal stopped); a kept partial run
    (``announce``: its record was saved) also gets the command that resumes it."""
    if result is None or result.status == "failed":
        code = EXIT_ERROR
    elif result.status == "complete":
        return 0
    else:
        code = stopped
    if result is not None and announce:
        _announce_resume(result.run_id, result.status)
    return code


def _announce_resume(run_id: str, status: str) -> None:
    _say(f"run {run_id} {status}; resume with: acetui resume {run_id}")


def _say(text: str) -> None:
    """A line of the command's on stderr, which a terminal gone with its SSH connection loses (``tell``)
    without failing the command."""
    tell(sys.stderr, f"acetui: {text}\n")


def _demo(args: argparse.Namespace) -> int:
    from acetui.demo import demo_request

    if args.headless:
        return run_headless(demo_request(), build_parser().parse_args(["estimate"]))
    return _open_app(request=demo_request)


def _open_app(request: Callable[[], EstimateRequest] | None = None, profile: str | None = None) -> int:
    """The app, opened on what ``request`` makes (the demo's, written only once the app can start); a
    ``--profile`` that is not saved is refused first (in the app it would be a passing notice). Runs that
    quitting stopped are named with the command that resumes them, as a stopped ``estimate`` is."""
    from acetui.tui.app import make_app

    if profile is not None:
        saved_profile(profile)
    check_app_terminal()
    return _app_ended(make_app(request=request() if request else None, profile=profile).run())


def check_app_terminal() -> None:
    """The full-screen app reads keys from standard input and draws on standard error (Textual's driver):
    without a terminal there (``ssh host acetui`` with no -t, ``2> file``, TERM=dumb) it drew escape codes
    into the file or pipe and waited for keys that never came. Refused, saying what runs there instead;
    standard output may go anywhere (``acetui | tee log``)."""
    streams = {"its input": sys.stdin, "its standard error (where it draws)": sys.stderr}
    not_terminals = [name for name, stream in streams.items() if stream is None or not stream.isatty()]
    if not_terminals:
        verb = "is not a terminal" if len(not_terminals) == 1 else "are not terminals"
        problem = f"{' and '.join(not_terminals)} {verb}"
    elif os.environ.get("TERM") == "dumb":
        problem = "TERM=dumb cannot draw it"
    else:
        return
    raise AcetuiError(
        f"the app needs a terminal ({problem}): over SSH use ssh -t; without one, acetui estimate or "
        "acetui demo --headless run the same estimator"
    )


def _app_ended(stopped: list[str] | None) -> int:
    """The app's end: 0, quitting is no failure; a line per run it stopped (None: it ended otherwise)."""
    for run_id in stopped or ():
        _announce_resume(run_id, "stops after its current batch")  # which may complete it
    return 0


def _inspect(args: argparse.Namespace) -> int:
    """``variants`` / ``scan``: the report on stdout; exit 1 when nothing in it is usable."""
    from acetui.preflight import dataset_report, variants_report

    if args.command == "variants":
        text, usable = variants_report(args.root.expanduser())
    else:
        folder = args.dataset.expanduser()
        root, variant = args.checkpoint_dir, args.variant
        own = own_folder(variant) if variant and root is None else None
        if own is not None:
            root, variant = own.parent, str(own)
        with counted_on_terminal(f"scanning {folder}", "files") as on_file:
            text, scan = dataset_report(folder, root, variant, every_file=args.all_files, on_file=on_file)
        usable = bool(scan.samples)
    sys.stdout.write(text)
    return 0 if usable else EXIT_ERROR


def _locate() -> int:
    dirs = paths.app_dirs()
    for label, path in (
        ("profiles", dirs.profiles),
        ("history", dirs.runs),
        ("demo", dirs.demo),
        ("cache", dirs.cache),
    ):
        print(f"{label:9} {path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Two rankings side by side, by ``--score``, else the score a ranking file names (acetui's exports say
    which), else grad-norm; a file ranked by another score than the comparison's is warned about."""
    from acetui.atomic import write_text_atomic
    from acetui.estimate.compare import compare_sensitivities, comparison_text, load_operand

    paths = (args.first, args.second)
    operands = [load_operand(path, granularity=args.granularity) for path in paths]
    named = [operand.fixed_score for operand in operands if operand.fixed_score]
    score = args.score or (named[0] if named else "grad-norm")
    for path, operand in zip(paths, operands):
        if operand.fixed_score not in (None, score):
            _say(f"warning: {path} is ranked by {operand.fixed_score}, compared with {score}")
    first, second = (operand.sensitivities(score) for operand in operands)
    comparison = compare_sensitivities(
        first, second, top_k=args.top_k, label_a=str(args.first), label_b=str(args.second)
    )
    sys.stdout.write(comparison_text(comparison, args.top))
    if args.output is not None:
        write_text_atomic(args.output.expanduser(), json.dumps(comparison.to_dict(args.top), indent=2) + "\n")
    return 0


def _resume(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``resume``: the run's record, read once; a complete run asked for output options writes them
    (``_stored_exports``), any other is continued, over ``--nproc`` processes or here. Refused when it
    is complete, a live process still runs it or the history holds another record of it; the other
    ranks of a multi-process resume skip those two checks, as their rank 0 may have taken the run up
    (into the history) already."""
    path = find_run(args.run)
    record = load_record(path)
    if record.status == "complete" and wants_outputs(args):
        if not args.quiet:
            _say(f"run {record.run_id} is complete: its files come from its record")
        return _stored_exports(record, args)
    check_incomplete(record)
    if world_from_env().main:
        _check_not_shadowed(path, record)
        check_not_running(record)
    request = record.request
    if args.cuda_graphs is not None:  # how the batches run, not what they compute: a resume may change it
        request = replace(request, cuda_graphs=args.cuda_graphs)
    spawned = _spawn(args, argv, request)
    return spawned if spawned is not None else run_headless(request, args, resume=record)


def _check_not_shadowed(path: Path, record: EstimateResult) -> None:
    """A resume continues the run's record in the history, which the engine claims and rewrites: a record
    file named by path that is not that one (a copy, perhaps edited) while the history has it would be
    passed over for it without a word, so it is refused, naming both. A file whose run the history lacks
    is continued into the history, and the history's own record by path is resumed as by its id."""
    history = history_record(record.run_id)
    if not history.is_file() or _same_file(path, history):
        return
    raise AcetuiError(
        f"{path} holds run {record.run_id}, whose record in the history is {history}: resume that one with "
        f"acetui resume {record.run_id}, or move it out of {history.parent} to resume {path} instead"
    )


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (through a link, or another spelling of the path)."""
    try:
        return first.samefile(second)
    except OSError:
        return False


def _stored_exports(record: EstimateResult, args: argparse.Namespace) -> int:
    """A run's ranking and files from its record, without running anything: ``show``, and ``resume`` of a
    complete run with output options (its files may have failed or been lost the first time)."""
    check_outputs(record.request, args)
    return _report(record, args) if world_from_env().main else 0


def _show(args: argparse.Namespace) -> int:
    record = load_record(find_run(args.run))
    if not record.included_batches:
        raise AcetuiError(f"run {record.run_id} ({shown_status(record)}) has no included batches: no ranking to show")
    if record.status != "complete":
        later = "still running" if run_owner_alive(record) else f"continue it with: acetui resume {record.run_id}"
        _say(
            f"run {record.run_id} is {shown_status(record)}, {batches_done(record)} batches so far: a partial "
            f"ranking ({later})"
        )
    return _stored_exports(record, args)


def _runs(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise AcetuiError(f"--limit/-n must be at least 1, got {args.limit}")
    runs, problems = list_runs()
    for problem in problems:
        _say(f"warning: {problem.reason} ({problem.fate})")
    folder = paths.app_dirs().runs
    blocker = nearest_existing(folder)
    if not blocker.is_dir():  # XDG_DATA_HOME or a folder under it is a file: no run could be recorded
        raise AcetuiError(f"no runs can be recorded in {folder}: {blocker} is not a folder")
    if args.json:
        listed = [{**run.to_dict(), "record": str(history_record(run.run_id))} for run in runs[: args.limit]]
        print(json.dumps(listed, indent=2))
    elif not runs:
        print(f"no runs recorded yet in {folder}")
    else:
        sys.stdout.write(runs_table(runs[: args.limit]))
    return 0


def _delete(args: argparse.Namespace) -> int:
    """Each run named, deleted or refused on its own line (as ``rm`` goes on past a file it cannot remove);
    the names are looked up first, so a run named twice (by its id and a prefix) is deleted once."""
    code = 0
    records: dict[Path, None] = {}
    for reference in args.runs:
        try:
            records.setdefault(find_run(reference), None)
        except AcetuiError as error:
            _say(str(error))
            code = EXIT_ERROR
    for record in records:
        try:
            run = delete_run(record)
        except AcetuiError as error:
            _say(str(error))
            code = EXIT_ERROR
            continue
        dataset = Path(run.request.dataset_dir).name
        print(f"deleted run {run.run_id} ({shown_status(run)}, {batches_done(run)} batches, {dataset})")
    return code


def _profiles(args: argparse.Namespace) -> int:
    """``profiles``: the saved ones, or one shown or deleted (the app saves and loads them with ctrl+s/ctrl+o)."""
    if args.show is not None:
        path = saved_profile(args.show)
        sys.stdout.write(f"# {path}\n{path.read_text(encoding='utf-8')}")
    elif args.delete is not None:
        print(f"deleted profile {args.delete} ({delete_profile(args.delete)})")
    elif not list_profiles():
        print(f"no profiles saved yet in {paths.app_dirs().profiles}")
    else:
        sys.stdout.write(profiles_table())
    return 0


def _report(result: EstimateResult, args: argparse.Namespace) -> int:
    """The files the options ask for, then the ranking on stdout and the files' names: the end of a run, or
    of a re-export. Files first, so that a terminal gone with its SSH connection (the SIGHUP that stopped
    the run; every write to it fails) cannot cost them; a file that cannot be written (a full disk) is
    reported after the ranking, which is shown all the same. The exit code of the showing (``_show_ranking``)."""
    try:
        written = write_outputs(result, args)
    except AcetuiError:
        _show_ranking(result, args, [])
        raise
    return _show_ranking(result, args, written)


def _show_ranking(result: EstimateResult, args: argparse.Namespace, written: list[Path]) -> int:
    """The ranking on stdout, then the files ``written`` on stderr: 0. When stdout cannot take it, 141 for a
    closed pipe (``| head``, as quiet as any command a pipe closes on) and 1 otherwise (a full disk, a
    terminal gone), said on stderr when that can still be written."""
    try:
        print_ranking(result, args.score or result.request.score, sys.stdout)
        sys.stdout.flush()
    except OSError as error:
        _drop_stdout()
        if isinstance(error, BrokenPipeError):
            return EXIT_BROKEN_PIPE
        files = f"; {plural(len(written), 'file')} written" if written else ""
        _say(f"the ranking could not be shown ({error.strerror or error}){files}; acetui show {result.run_id} shows it")
        return EXIT_ERROR
    for path in [] if args.quiet else written:
        _say(f"wrote {path}")
    return 0


def _spawn(args: argparse.Namespace, argv: Sequence[str] | None, request: EstimateRequest) -> int | None:
    """``--nproc N`` outside torchrun: start N ranks of this same command line; None when not asked.
    Bad flags and a finished or running run were refused here already, once, not by every rank."""
    if getattr(args, "nproc", None) is None or world_from_env().distributed:
        return None
    check_process_count(args.nproc, resolve_device(request.device))
    if args.nproc == 1:
        return None
    check_outputs(request, args)
    from acetui.estimate.distributed import spawn_local, strip_nproc

    return spawn_local(args.nproc, strip_nproc(sys.argv[1:] if argv is None else argv))


def _estimate(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    request = request_from_args(args)
    if args.save_profile is not None:  # before the run: kept whatever becomes of it
        saved = save_new_profile(args.save_profile, settings_of(request))
        if saved is not None:
            _say(f"saved profile {args.save_profile} ({saved})")
    spawned = _spawn(args, argv, request)
    return spawned if spawned is not None else run_headless(request, args)


def _check_profile_command(args: argparse.Namespace) -> None:
    """A ``--profile`` before a subcommand that takes none (``acetui --profile x locate``) would be dropped
    without a word: refused, naming the subcommand, as the user evidently meant it to apply."""
    if args.profile is not None and args.command is not None and args.command not in PROFILE_COMMANDS:
        raise AcetuiError(
            f"--profile does not apply to {args.command} (only to the app and to {', '.join(PROFILE_COMMANDS)})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _command(args, argv)
        sys.stdout.flush()  # here rather than at exit, where a reader gone would be Python's to report
        return code
    except BrokenPipeError:  # the reader of stdout went away (``acetui runs | head -1``): as quiet as any command
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except AcetuiError as error:
        _say(str(error))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("aborted")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line for the user, the traceback when asked for
        if os.environ.get(DEBUG_VARIABLE):
            raise
        _say(f"unexpected {type(error).__name__}: {first_line(error)} (set {DEBUG_VARIABLE}=1 for the traceback)")
        return EXIT_ERROR


def _drop_stdout() -> None:
    """Point stdout at the null device, so that what is left in its buffer goes nowhere at exit."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _command(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The command ``args`` names, run; its exit code."""
    _check_profile_command(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "estimate":
        return _estimate(args, argv)
    if args.command == "resume":
        return _resume(args, argv)
    if args.command == "show":
        return _show(args)
    if args.command == "runs":
        return _runs(args)
    if args.command == "delete":
        return _delete(args)
    if args.command == "profiles":
        return _profiles(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "locate":
        return _locate()
    if args.command in ("variants", "scan"):
        return _inspect(args)
    return _open_app(profile=args.profile)
