"""The ``acetui`` command: the TUI by default; ``estimate``, ``resume``, ``compare``, ``variants``, ``scan``,
``demo`` and ``locate``.

Every user-facing failure exits non-zero with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from acetui import __version__, paths
from acetui.errors import AcetuiError, first_line
from acetui.estimate import SCORES, EstimateRequest, EstimateResult, Estimator
from acetui.estimate.distributed import world_from_env
from acetui.estimate.ownership import check_incomplete, check_not_running
from acetui.history import find_run, load_record
from acetui.profiles import load_profile
from acetui.progress import ConsoleReporter, check_outputs, print_ranking, wants_outputs, write_outputs

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
DEBUG_VARIABLE = "ACETUI_DEBUG"
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _batches(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError("must be a positive integer or 'auto'")
    return text


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``estimate``; unset ones fall back to the profile."""
    add = parser.add_argument
    add("--checkpoint-dir", "-c", type=Path, help="checkpoints root, e.g. ACE-Step-1.5/checkpoints")
    add(
        "--model-variant",
        "--model",
        "-M",
        dest="variant",
        help="turbo, base, sft, xl-base, xl-sft, xl-turbo or a folder name",
    )
    add("--dataset-dir", "-d", type=Path, help="folder of preprocessed .pt samples")
    add("--estimate-batches", dest="batches", type=_batches, help="batches to run, or 'auto' (default 5)")
    add("--max-batches", type=int, help="upper limit for --estimate-batches auto (default 50)")
    add("--stability-target", type=float, help="top-k stability at which 'auto' stops (default 0.9)")
    add("--top-k", type=int, help="modules highlighted and exported as targets (default 16)")
    add("--granularity", choices=("module", "layer"), help="rank projections or attention blocks (default module)")
    add("--seed", type=int, help="seed for batch order, noise and timesteps (default 42)")
    add("--batch-size", type=int, help="samples per batch (default 1)")
    add("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    add("--dtype", choices=("auto", "bf16", "fp16", "fp32"), help="auto = bf16 on CUDA, fp32 on CPU")
    add("--timestep-focus", help="balanced, texture, structure or LOW,HIGH (default balanced)")
    add("--modules", choices=("attention", "attention+mlp"), help="which projections to score")
    add("--crop-frames", type=int, help="crop samples to this many latent frames (25 per second)")
    add("--activation-checkpointing", choices=("auto", "on", "off"), help="recompute activations to save memory")
    add("--strict", action="store_true", default=None, help="any bad sample file is an error")
    add("--profile", help="start from a saved profile; flags given here win")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--estimate-output", "--output", "-o", dest="output", type=Path, help="write the JSON ranking here")
    add("--csv", type=Path, help="also write the ranking as CSV")
    add("--peft-output", type=Path, help="write PEFT target_modules (exact names of the top-k) as JSON")
    add("--score", choices=SCORES, help="score to rank and track stability by (default grad-norm; resume: the run's)")
    add(
        "--fisher-map",
        nargs="?",
        const="",
        type=str,
        metavar="PATH",
        help="write Side-Step's fisher_map.json (default PATH: <dataset-dir>/fisher_map.json)",
    )
    add("--force", action="store_true", help="replace an existing fisher_map.json")
    add("--base-rank", "--rank", type=int, default=64, help="fisher map: median LoRA rank (default 64)")
    add("--rank-min", type=int, default=16, help="fisher map: smallest assigned rank (default 16)")
    add("--rank-max", type=int, default=128, help="fisher map: largest assigned rank (default 128)")
    add(
        "--rank-budget",
        type=int,
        metavar="PARAMS",
        help="with --peft-output: add rank_pattern/alpha_pattern for the top-k, more rank to more sensitive "
        "modules, PARAMS LoRA parameters in all (0: what --base-rank on each would cost)",
    )
    add("--quiet", "-q", action="store_true", help="no progress bar on stderr")


def _add_nproc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nproc",
        type=int,
        help="split the batches over N local processes (one per GPU; "
        "gloo on CPU); under torchrun this is set by torchrun instead",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acetui", description="Rank ACE-Step 1.5 decoder attention projections by gradient sensitivity."
    )
    parser.add_argument("--version", action="version", version=f"acetui {__version__}")
    parser.add_argument("--profile", help="open the app prefilled from a saved profile, at the parameters step")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    estimate = commands.add_parser("estimate", help="run the estimator headless and print/write the ranking")
    _add_run_options(estimate)
    _add_output_options(estimate)
    _add_nproc_option(estimate)

    demo = commands.add_parser("demo", help="open the app on a generated demo checkpoint and dataset")
    demo.add_argument("--headless", action="store_true", help="run the estimate in the terminal instead of the app")

    resume = commands.add_parser("resume", help="continue a partial run to its requested batch count")
    resume.add_argument("run", help="run id (or unique prefix) from the history, or a run record file")
    _add_output_options(resume)
    _add_nproc_option(resume)

    compare = commands.add_parser("compare", help="compare two rankings: run records or estimate JSON files")
    compare.add_argument("first", type=Path, help="run record, estimate JSON export or fisher_map.json")
    compare.add_argument("second", type=Path, help="the ranking to compare it with")
    compare.add_argument(
        "--score",
        choices=SCORES,
        default="grad-norm",
        help="score used for run records (default grad-norm)",
    )
    compare.add_argument("--granularity", choices=("module", "layer"), help="for run records (default: the run's)")
    compare.add_argument("--top", type=int, default=10, help="rows of modules that differ most (default 10)")
    compare.add_argument("--top-k", type=int, default=16, help="size of the top sets compared (default 16)")
    compare.add_argument("--output", "-o", type=Path, help="also write the full comparison as JSON")

    variants = commands.add_parser("variants", help="list the model variants of a checkpoints root")
    variants.add_argument("root", type=Path, help="checkpoints root, e.g. ACE-Step-1.5/checkpoints")

    scan = commands.add_parser("scan", help="check a dataset folder without loading a model")
    scan.add_argument("dataset", type=Path, help="folder of preprocessed .pt samples")
    scan.add_argument("--checkpoint-dir", "-c", type=Path, help="with --model-variant: check widths against it")
    scan.add_argument("--model-variant", "--model", "-M", dest="variant", help="variant whose widths to check")

    commands.add_parser("locate", help="print where acetui keeps profiles, history and the demo")
    return parser


def request_from_args(args: argparse.Namespace) -> EstimateRequest:
    """Profile values first, then every flag the user actually gave."""
    values = load_profile(args.profile) if args.profile else {}
    for key in (
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
        "strict",
        "max_batches",
        "stability_target",
    ):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    if args.batches == "auto":
        values["auto_batches"] = True
    elif args.batches is not None:
        values["batches"], values["auto_batches"] = int(args.batches), False
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
    reporter = ConsoleReporter(quiet=args.quiet or not world.main)
    if world.distributed:
        from acetui.estimate.distributed import distributed_estimator

        estimator = distributed_estimator(
            request, world, on_event=reporter, resume=resume, record_dir=paths.app_dirs().runs
        )
    else:
        estimator = Estimator(request, on_event=reporter, resume=resume, record_dir=paths.app_dirs().runs)
    previous = {}

    def stop(signum, frame) -> None:
        if estimator.stopping:
            raise KeyboardInterrupt
        estimator.cancel("interrupted")
        when = "the current batch" if reporter.last_batch is not None else "setup"
        reporter.note(f"{signal.Signals(signum).name}: stopping after {when} (again to abort)")

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
    if result is not None and world.main and result.included_batches:
        _report(result, args)
    record = None if result is None else estimator.record_path(result.run_id)
    hopeless = result is not None and result.status == "failed" and bool(result.batches) and not result.included_batches
    return _finish(result, announce=record is not None and record.is_file() and not hopeless)


def _finish(result: EstimateResult | None, announce: bool) -> int:
    """Exit code for how the run ended; a kept partial run (``announce``: its record was saved) also
    gets the command that resumes it."""
    if result is None or result.status == "failed":
        code = EXIT_ERROR
    elif result.status == "complete":
        return 0
    else:
        code = EXIT_INTERRUPTED
    if result is not None and announce:
        print(
            f"acetui: run {result.run_id} {result.status}; resume with: acetui resume {result.run_id}", file=sys.stderr
        )
    return code


def _demo(args: argparse.Namespace) -> int:
    from acetui.demo import demo_request

    request = demo_request()
    if args.headless:
        return run_headless(request, build_parser().parse_args(["estimate"]))
    return _open_app(request=request)


def _open_app(request: EstimateRequest | None = None, profile: str | None = None) -> int:
    from acetui.tui.app import make_app

    make_app(request=request, profile=profile).run()
    return 0


def _inspect(args: argparse.Namespace) -> int:
    """``variants`` / ``scan``: the report on stdout; exit 1 when nothing in it is usable."""
    from acetui.preflight import dataset_report, variants_report

    if args.command == "variants":
        text, usable = variants_report(args.root.expanduser())
    else:
        text, scan = dataset_report(args.dataset.expanduser(), args.checkpoint_dir, args.variant)
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
    from acetui.atomic import write_text_atomic
    from acetui.estimate.compare import compare_sensitivities, comparison_text, load_sensitivities

    first = load_sensitivities(args.first, score=args.score, granularity=args.granularity)
    second = load_sensitivities(args.second, score=args.score, granularity=args.granularity)
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
    is complete or a live process still runs it; the other ranks of a multi-process resume skip the
    owner check, as their rank 0 may have taken the run up already."""
    record = load_record(find_run(args.run))
    if record.status == "complete" and wants_outputs(args):
        return _stored_exports(record, args)
    check_incomplete(record)
    if world_from_env().main:
        check_not_running(record)
    spawned = _spawn(args, argv, record.request)
    return spawned if spawned is not None else run_headless(record.request, args, resume=record)


def _stored_exports(record: EstimateResult, args: argparse.Namespace) -> int:
    """A complete run's files written from its record: there is nothing left to run, and the files may
    have failed or been lost the first time."""
    check_outputs(record.request, args)
    if world_from_env().main:
        _report(record, args)
    return 0


def _report(result: EstimateResult, args: argparse.Namespace) -> None:
    """The ranking on stdout and the files the options ask for: the end of a run, or of a re-export."""
    print_ranking(result, args.score or result.request.score, sys.stdout)
    write_outputs(result, args)


def _spawn(args: argparse.Namespace, argv: Sequence[str] | None, request: EstimateRequest) -> int | None:
    """``--nproc N`` outside torchrun: start N ranks of this same command line; None when not asked.
    Bad flags and a finished or running run were refused here already, once, not by every rank."""
    if not getattr(args, "nproc", None) or args.nproc == 1 or world_from_env().distributed:
        return None
    check_outputs(request, args)
    from acetui.estimate.distributed import spawn_local, strip_nproc

    return spawn_local(args.nproc, strip_nproc(sys.argv[1:] if argv is None else argv))


def _estimate(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    request = request_from_args(args)
    spawned = _spawn(args, argv, request)
    return spawned if spawned is not None else run_headless(request, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compare":
            return _compare(args)
        if args.command == "estimate":
            return _estimate(args, argv)
        if args.command == "resume":
            return _resume(args, argv)
        if args.command == "demo":
            return _demo(args)
        if args.command == "locate":
            return _locate()
        if args.command in ("variants", "scan"):
            return _inspect(args)
        return _open_app(profile=args.profile)
    except AcetuiError as error:
        print(f"acetui: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("acetui: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line for the user, the traceback when asked for
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(
            f"acetui: unexpected {type(error).__name__}: {first_line(error)} "
            f"(set {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
