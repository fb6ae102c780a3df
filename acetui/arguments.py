"""The ``acetui`` command line's grammar: every command and option, with the help text users read.

Run options default to None so that a ``--profile`` fills what the command line leaves unset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acetui import __version__
from acetui.estimate.request import CHECKPOINTING, CUDA_GRAPHS, DTYPES, GRANULARITIES, MODULE_SETS, SCORES
from acetui.estimate.sidestep import DEFAULT_BASE_RANK, DEFAULT_RANK_MAX, DEFAULT_RANK_MIN


def _batches(text: str) -> str:
    if text != "auto" and not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError("must be a positive integer or 'auto'")
    return text


# The subcommands whose options include --profile: a --profile before one of them is its own; before any
# other it would be dropped, so the CLI refuses it instead.
PROFILE_COMMANDS = ("estimate",)


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
    add("--granularity", choices=GRANULARITIES, help="rank projections or attention blocks (default module)")
    add("--seed", type=int, help="seed for batch order, noise and timesteps (default 42)")
    add("--batch-size", type=int, help="samples per batch (default 1)")
    add("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    add("--dtype", choices=("auto", *DTYPES), help="auto = bf16 on CUDA, fp32 on CPU")
    add("--timestep-focus", help="balanced, texture, structure or LOW,HIGH (default balanced)")
    add("--modules", choices=MODULE_SETS, help="which projections to score")
    add("--crop-frames", type=int, help="crop samples to this many latent frames (25 per second)")
    add("--activation-checkpointing", choices=CHECKPOINTING, help="recompute activations to save memory")
    _add_cuda_graphs_option(parser)
    add("--strict", action="store_true", default=None, help="any bad sample file is an error")
    # Unset, it must leave a --profile given before the subcommand in place: argparse copies every value of
    # the subcommand's namespace over the top-level one's, so a default of None would erase it.
    add("--profile", default=argparse.SUPPRESS, help="start from a saved profile; flags given here win")
    add("--save-profile", metavar="NAME", help="save these settings (a profile's and the flags') as profile NAME")


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--estimate-output", "--output", "-o", dest="output", type=Path, help="write the JSON ranking here")
    add("--csv", type=Path, help="also write the ranking as CSV")
    add("--peft-output", type=Path, help="write PEFT target_modules (exact names of the top-k) as JSON")
    add(
        "--peft-suffix-output",
        type=Path,
        help="write PEFT target_modules as suffixes (self_attn.q_proj: every layer's) covering the top-k, as JSON",
    )
    add(
        "--score",
        choices=SCORES,
        help="score to rank (and track stability) by: estimate's default grad-norm, resume and show use the run's own",
    )
    add(
        "--fisher-map",
        nargs="?",
        const="",
        type=str,
        metavar="PATH",
        help="write Side-Step's fisher_map.json (default PATH: <dataset-dir>/fisher_map.json)",
    )
    add("--force", action="store_true", help="replace an existing fisher_map.json")
    add(
        "--base-rank",
        "--rank",
        type=int,
        default=DEFAULT_BASE_RANK,
        help=f"fisher map: median LoRA rank (default {DEFAULT_BASE_RANK})",
    )
    add(
        "--rank-min",
        type=int,
        default=DEFAULT_RANK_MIN,
        help=f"fisher map: smallest assigned rank (default {DEFAULT_RANK_MIN})",
    )
    add(
        "--rank-max",
        type=int,
        default=DEFAULT_RANK_MAX,
        help=f"fisher map: largest assigned rank (default {DEFAULT_RANK_MAX})",
    )
    add(
        "--rank-budget",
        type=int,
        metavar="PARAMS",
        help="with --peft-output: add rank_pattern/alpha_pattern for the top-k, more rank to more sensitive "
        "modules, PARAMS LoRA parameters in all (0: what --base-rank on each would cost)",
    )
    add("--quiet", "-q", action="store_true", help="no progress bar on stderr")


def _add_cuda_graphs_option(parser: argparse.ArgumentParser) -> None:
    """Also a resume's: how batches run, not what they compute, so a resumed run may change it."""
    help_text = "auto: replay batch shapes that recur as CUDA graphs (default); off: every batch kernel by kernel"
    parser.add_argument("--cuda-graphs", choices=CUDA_GRAPHS, help=help_text)


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
    parser.add_argument(
        "--profile",
        help="open the app prefilled from a saved profile, at the parameters step (before estimate: its --profile)",
    )
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
    _add_cuda_graphs_option(resume)

    runs = commands.add_parser("runs", help="list the run history, newest first (the app's History)")
    runs.add_argument("--limit", "-n", type=int, help="only the newest N runs")
    runs.add_argument(
        "--json",
        action="store_true",
        help="a JSON list for scripts: each run's id, status, batches completed, top module, creation time, "
        "settings (the batches asked for among them) and record file",
    )

    delete = commands.add_parser("delete", help="remove runs from the history for good (not a running one)")
    delete.add_argument("runs", nargs="+", metavar="run", help="run id (or unique prefix) from the history")

    show = commands.add_parser("show", help="print a run's ranking, partial or complete, and write its exports")
    show.add_argument("run", help="run id (or unique prefix) from the history, or a run record file")
    _add_output_options(show)

    compare = commands.add_parser("compare", help="compare two rankings: run records or estimate JSON files")
    compare.add_argument("first", type=Path, help="run record, estimate JSON export or fisher_map.json")
    compare.add_argument("second", type=Path, help="the ranking to compare it with")
    compare.add_argument(
        "--score",
        choices=SCORES,
        help="score used for run records (default: the one an acetui JSON export names, else grad-norm)",
    )
    compare.add_argument("--granularity", choices=GRANULARITIES, help="for run records (default: the run's)")
    compare.add_argument("--top", type=int, default=10, help="rows of modules that differ most (default 10)")
    compare.add_argument("--top-k", type=int, default=16, help="size of the top sets compared (default 16)")
    compare.add_argument("--output", "-o", type=Path, help="also write the full comparison as JSON")

    variants = commands.add_parser("variants", help="list the model variants of a checkpoints root")
    variants.add_argument("root", type=Path, help="checkpoints root, e.g. ACE-Step-1.5/checkpoints")

    scan = commands.add_parser("scan", help="check a dataset folder without loading a model")
    scan.add_argument("dataset", type=Path, help="folder of preprocessed .pt samples")
    scan.add_argument("--checkpoint-dir", "-c", type=Path, help="with --model-variant: check widths against it")
    scan.add_argument("--model-variant", "--model", "-M", dest="variant", help="variant whose widths to check")
    scan.add_argument(
        "--all-files", action="store_true", help="name every bad file (by default a few per reason, and a count)"
    )

    profiles = commands.add_parser("profiles", help="list the saved profiles (the app's ctrl+o), show or delete one")
    one = profiles.add_mutually_exclusive_group()
    one.add_argument("--show", metavar="NAME", help="print a profile's file")
    one.add_argument("--delete", metavar="NAME", help="remove a saved profile")

    commands.add_parser("locate", help="print where acetui keeps profiles, history and the demo")
    return parser
