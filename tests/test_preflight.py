"""``acetui variants`` and ``acetui scan``: the inputs checked from a shell, no model loaded."""

from __future__ import annotations

import re
import shutil
import sys

import pytest
import torch

from acetui.cli import main
from acetui.model.synthetic import TINY, write_checkpoint
from tests.support import run_with_terminal_stderr


def test_variants_lists_each_with_its_facts_and_problems(checkpoint_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(checkpoint_root, root)
    write_checkpoint(root / "my-finetune", TINY, seed=9)
    (root / "acestep-v15-sft").mkdir()
    (root / "acestep-v15-sft" / "config.json").write_text("{broken")
    assert main(["variants", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["turbo", "base", "sft", "xl-base", "my-finetune"]
    turbo = lines[1].split()
    assert turbo[1:4] == ["0.3", "M", "bf16"] and turbo[-1] == "single" and lines[2].split()[-1] == "sharded"
    assert "unusable:" in lines[3] and "config.json" in lines[3]


def test_a_variant_folder_that_is_not_one_is_listed_with_why(checkpoint_root, tmp_path, capsys):
    """A dangling link named like a variant, or a config.json that is a folder, was left out without a word."""
    root = tmp_path / "root"
    shutil.copytree(checkpoint_root, root)
    (root / "acestep-v15-sft").symlink_to(tmp_path / "gone")
    (root / "acestep-v15-turbo-shift1" / "config.json").mkdir(parents=True)
    (root / "acestep-v15-notes.txt").write_text("not a variant")
    assert main(["variants", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    problems = {line.split()[0]: line.split(None, 2)[2] for line in lines[1:] if " unusable: " in line}
    assert problems == {
        "sft": f"{root / 'acestep-v15-sft'}: a link to {tmp_path / 'gone'}, which does not exist",
        "turbo-shift1": f"{root / 'acestep-v15-turbo-shift1' / 'config.json'}: cannot read (Is a directory)",
    }


def test_variants_of_an_empty_root_exit_1(tmp_path, capsys):
    assert main(["variants", str(tmp_path)]) == 1
    assert "no variant folders" in capsys.readouterr().out


def test_scan_reports_problems_and_checks_widths_against_a_variant(checkpoint_root, dataset_dir, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(dataset_dir, folder)
    (folder / "bad.pt").write_bytes(b"junk")
    assert main(["scan", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "6 samples" in out and "1 problem file" in out and "bad.pt: not a valid torch file" in out
    assert "--checkpoint-dir and --model-variant" in out

    assert main(["scan", str(folder), "-c", str(checkpoint_root), "-M", "xl-base"]) == 1  # width 48 != 64
    out = capsys.readouterr().out
    assert "0 samples" in out and "7 problem files" in out and "--checkpoint-dir" not in out
    assert "encoder_hidden_states" in out


def test_scan_prints_a_line_per_reason_not_per_file(checkpoint_root, dataset_dir, tmp_path, capsys):
    """500 truncated files printed 500 lines, all alike; now one line per reason says how many and names a few."""
    folder = tmp_path / "data"
    shutil.copytree(dataset_dir, folder)
    head = (folder / "sample_000.pt").read_bytes()[:100]
    for index in range(40):
        (folder / f"bad_sample_{index:03d}.pt").write_bytes(head)
    (folder / "bad_sample_\x1b[31m.pt").write_bytes(b"")  # sorts first: its name is escaped
    torch.save({"target_latents": torch.zeros(3)}, folder / "partial.pt")
    assert main(["scan", str(folder), "-c", str(checkpoint_root), "-M", "turbo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    corrupt = "not a valid torch file (corrupt, truncated or not written by torch.save)"
    assert lines[0].endswith(", 42 problem files")
    assert lines[1:] == [
        f"  41 files: {corrupt}: bad_sample_\\x1b[31m.pt, bad_sample_000.pt, bad_sample_001.pt and 38 more",
        "  partial.pt: missing keys 'context_latents', 'encoder_hidden_states'",
    ]
    # and every name on request, for the user who has to find them all
    assert main(["scan", str(folder), "-c", str(checkpoint_root), "-M", "turbo", "--all-files"]) == 0
    every = ", ".join(["bad_sample_\\x1b[31m.pt", *(f"bad_sample_{index:03d}.pt" for index in range(40))])
    assert capsys.readouterr().out.splitlines()[1] == f"  41 files: {corrupt}: {every}"


def test_scan_gives_the_variant_warning_that_estimate_gives(checkpoint_root, dataset_dir, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(dataset_dir, folder)
    (folder / "preprocess_meta.json").write_text('{"model_variant": "base"}')
    warning = (
        f"{folder}: preprocessed with 'base' but estimating 'turbo'; its encoder_hidden_states come from the "
        "other variant's condition encoder"
    )
    assert main(["scan", str(folder), "-c", str(checkpoint_root), "-M", "turbo"]) == 0
    assert f"  warning: {warning}\n" in capsys.readouterr().out
    assert main(["estimate", "-q", "-c", str(checkpoint_root), "-M", "turbo", "-d", str(folder),
                 "--estimate-batches", "1", "--device", "cpu"]) == 0  # fmt: skip
    assert f"acetui: warning: {warning}\n" in capsys.readouterr().err
    assert main(["scan", str(folder), "-c", str(checkpoint_root), "-M", "base"]) == 0
    assert "warning" not in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_scan_counts_its_files_on_a_terminal_and_wipes_the_count(dataset_dir, tmp_path):
    """A dataset of thousands of files takes a while: a terminal sees the count, which leaves no trace."""
    code, text = run_with_terminal_stderr(tmp_path, "scan", str(dataset_dir))
    updates = text.split("\r\x1b[K")
    assert code == 0 and updates[:2] == ["", f"scanning {dataset_dir} ... 0 of 6 files"] and updates[-1] == ""
    assert all(re.fullmatch(f"scanning {dataset_dir} ... [0-5] of 6 files", line) for line in updates[1:-1])
