"""scan_dataset on real folders: all problems at once, folder-level errors, the summary line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from acetui.data import DatasetScan, SampleInfo, SampleProblem, scan_dataset, write_dataset
from acetui.data.samples import LATENT_FRAMES_PER_SECOND
from acetui.errors import DatasetError
from tests.support import sample_dict


def test_mixed_folder_lists_every_problem_and_other_file(tmp_path):
    write_dataset(tmp_path, count=3, condition_width=32, frames=(25, 50), condition_length=(4, 4))
    good = torch.load(tmp_path / "sample_000.pt", weights_only=True)
    torch.save({k: v for k, v in good.items() if k != "context_latents"}, tmp_path / "b_missing.pt")
    torch.save({**good, "encoder_hidden_states": torch.randn(4, 2048)}, tmp_path / "c_wide.pt")
    torch.save(good, tmp_path / "song.tmp.pt")
    (tmp_path / "a_broken.pt").write_bytes(b"\x00" * 10)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "song.pt.__writing__").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    torch.save(good, tmp_path / "sub" / "nested.pt")

    scan = scan_dataset(tmp_path, condition_width=32)

    assert [info.path.name for info in scan.samples] == ["sample_000.pt", "sample_001.pt", "sample_002.pt"]
    problem_names = [problem.path.name for problem in scan.problems]
    assert problem_names == ["a_broken.pt", "b_missing.pt", "c_wide.pt", "song.tmp.pt"]
    reasons = [problem.reason for problem in scan.problems]
    assert reasons[0].startswith("not a valid torch file")
    assert reasons[1] == "missing key 'context_latents'"
    assert reasons[2].startswith("'encoder_hidden_states' has 2048 channels, expected 32")
    assert reasons[3].startswith("pass-1 intermediate")
    assert str(scan.problems[1]) == "b_missing.pt: missing key 'context_latents'"
    assert [path.name for path in scan.other_files] == ["notes.txt", "song.pt.__writing__"]
    assert scan.summary().endswith(", 4 problem files, 2 other files")
    scan.require_samples()


CORRUPT = "not a valid torch file (corrupt, truncated or not written by torch.save)"


def test_problems_are_grouped_by_reason_the_largest_group_first(tmp_path):
    """500 truncated files printed 500 lines; a reason met by many files is one line with its count, and the
    reason of most files comes first (then the order of each reason's first file)."""
    paths = write_dataset(tmp_path, count=2, condition_width=16, frames=(30, 30), condition_length=(4, 4))
    head = paths[0].read_bytes()[:100]
    for index in range(6):
        (tmp_path / f"bad_{index}.pt").write_bytes(head)
    good = torch.load(paths[0], weights_only=True)
    for name in ("a_missing.pt", "c_missing.pt"):
        torch.save({k: v for k, v in good.items() if k != "context_latents"}, tmp_path / name)
    torch.save({**good, "encoder_hidden_states": torch.randn(4, 8)}, tmp_path / "narrow\x1b[2J.pt")

    groups = scan_dataset(tmp_path, condition_width=16).problem_groups()

    missing = "missing key 'context_latents'"
    assert [(group.reason, [path.name for path in group.paths]) for group in groups] == [
        (CORRUPT, [f"bad_{index}.pt" for index in range(6)]),
        (missing, ["a_missing.pt", "c_missing.pt"]),
        (groups[2].reason, ["narrow\x1b[2J.pt"]),
    ]
    assert [str(group) for group in groups] == [
        f"6 files: {CORRUPT}: bad_0.pt, bad_1.pt, bad_2.pt and 3 more",
        f"2 files: {missing}: a_missing.pt, c_missing.pt",
        f"narrow\\x1b[2J.pt: {groups[2].reason}",
    ]
    assert groups[2].reason.startswith("'encoder_hidden_states' has 8 channels, expected 16")


def test_a_group_names_every_file_up_to_three_and_escapes_each():
    names = ["a.pt", "b\nc.pt", "d.pt", "e.pt"]
    problems = tuple(SampleProblem(Path("d") / name, "bad") for name in names)
    three = DatasetScan(Path("d"), (), problems[:3], ()).problem_groups()
    assert [str(group) for group in three] == ["3 files: bad: a.pt, b\\nc.pt, d.pt"]
    four = DatasetScan(Path("d"), (), problems, ()).problem_groups()
    assert [str(group) for group in four] == ["4 files: bad: a.pt, b\\nc.pt, d.pt and 1 more"]
    assert DatasetScan(Path("d"), (), (), ()).problem_groups() == ()


def test_the_scan_tells_its_progress_before_each_file_and_stops_where_told(tmp_path):
    """A front end follows a scan of thousands of files, and stops one whose result nobody wants any more."""
    write_dataset(tmp_path, count=4, condition_width=16)
    (tmp_path / "bad.pt").write_text("not a tensor file")  # bad files count as scanned too
    told = []
    scan = scan_dataset(tmp_path, on_file=lambda done, total: told.append((done, total)))
    assert told == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)] and len(scan.samples) == 4

    class Abandoned(Exception):
        pass

    def stop_at_the_third(done: int, total: int) -> None:
        if done == 2:
            raise Abandoned

    with pytest.raises(Abandoned):
        scan_dataset(tmp_path, on_file=stop_at_the_third)


def test_sample_info_and_totals(tmp_path):
    paths = write_dataset(tmp_path, count=2, condition_width=16, frames=(50, 50), condition_length=(3, 3))
    write_dataset(tmp_path / "long", count=1, condition_width=16, frames=(4000, 4000), condition_length=(9, 9))
    (tmp_path / "long" / "sample_000.pt").rename(tmp_path / "z_long.pt")
    scan = scan_dataset(tmp_path)
    first = scan.samples[0]
    assert first == SampleInfo(paths[0], 50, 3, 16, paths[0].stat().st_size, first.content)
    assert len(first.content) == 8 and first.content != scan.samples[1].content
    assert first.seconds == 2.0
    assert (scan.total_seconds, scan.min_seconds, scan.max_seconds) == (164.0, 2.0, 160.0)
    assert scan.condition_lengths == (3, 9)
    assert [info.path for info in scan.samples] == [*paths, tmp_path / "z_long.pt"]
    assert scan.summary() == "3 samples, 2m 44s total (2.0-160.0 s), condition length 3-9"
    assert scan.notes == (
        "z_long.pt: 2m 40s, 80x the median sample (2.0 s); its batches need about that much more memory",
    )


def test_content_digest_tells_values_apart_and_not_copies(tmp_path):
    """A sample rewritten with other values of the same shapes keeps its name, lengths and file size; only
    the digest of its tensors tells (resume refuses it). A copy, with new modification times, digests alike."""
    paths = write_dataset(tmp_path / "a", count=2, condition_width=16, frames=(30, 30), condition_length=(4, 4))
    before = scan_dataset(tmp_path / "a").samples
    shutil.copytree(tmp_path / "a", tmp_path / "copy", copy_function=shutil.copyfile)
    copied = scan_dataset(tmp_path / "copy").samples
    assert [info.content for info in copied] == [info.content for info in before]

    data = torch.load(paths[1], weights_only=True)
    torch.save({**data, "encoder_hidden_states": torch.randn_like(data["encoder_hidden_states"])}, paths[1])
    after = scan_dataset(tmp_path / "a").samples
    sizes = [(info.frames, info.condition_length, info.size_bytes) for info in after]
    assert sizes == [(info.frames, info.condition_length, info.size_bytes) for info in before]
    assert after[0].content == before[0].content and after[1].content != before[1].content


def _write_lengths(folder: Path, seconds: dict[str, float]) -> Path:
    """Real samples of the given durations, by file name."""
    folder.mkdir()
    for name, length in seconds.items():
        torch.save(sample_dict(frames=round(length * LATENT_FRAMES_PER_SECOND), tokens=2), folder / name)
    return folder


def test_a_sample_far_longer_than_the_others_is_noted(tmp_path):
    """A mistaken file or a "decompression bomb" .pt passes every check, then its batches run out of memory."""
    folder = _write_lengths(tmp_path / "one", {"a.pt": 10, "b.pt": 10, "c.pt": 12, "long\nname.pt": 150})
    assert scan_dataset(folder).notes == (
        "long\\nname.pt: 2m 30s, 14x the median sample (11.0 s); its batches need about that much more memory",
    )
    short = {f"s{index}.pt": 2 for index in range(5)}
    folder = _write_lengths(tmp_path / "four", {**short, "b.pt": 80, "d.pt": 100, "a.pt": 70, "c.pt": 90})
    assert scan_dataset(folder).notes == (
        "4 samples far longer than the median sample (2.0 s): d.pt 1m 40s (50x), c.pt 1m 30s (45x), "
        "b.pt 1m 20s (40x) and 1 more; their batches need about that much more memory",
    )


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param({"a.pt": 1, "b.pt": 1, "c.pt": 1, "d.pt": 55}, id="55x the median but under a minute"),
        pytest.param({"a.pt": 16, "b.pt": 16, "c.pt": 120}, id="over a minute but 7.5x the median"),
    ],
)
def test_ordinary_spreads_of_lengths_are_not_noted(tmp_path, seconds):
    assert scan_dataset(_write_lengths(tmp_path / "data", seconds)).notes == ()


def test_summary_wording():
    one = SampleInfo(Path("a.pt"), 100, 12, 8, 1, "0")
    assert DatasetScan(Path("d"), (one,), (), (Path("x"),)).summary() == (
        "1 sample, 4.0 s total (4.0-4.0 s), condition length 12, 1 other file"
    )
    hours = SampleInfo(Path("b.pt"), 25 * 3725, 12, 8, 1, "0")
    assert "1h 02m 05s total" in DatasetScan(Path("d"), (hours,), (), ()).summary()
    problem = SampleProblem(Path("d/c.pt"), "bad")
    assert DatasetScan(Path("d"), (), (problem,), ()).summary() == "0 samples, 1 problem file"


def test_no_valid_samples(tmp_path):
    (tmp_path / "x.pt").write_text("junk")
    (tmp_path / "y.pt").write_text("junk")
    scan = scan_dataset(tmp_path)
    assert scan.samples == () and len(scan.problems) == 2
    with pytest.raises(DatasetError) as caught:
        scan.require_samples()
    assert str(caught.value).startswith(f"{tmp_path}: no valid samples (2 problem files; first: x.pt: not a valid")


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        scan_dataset(tmp_path / "nope")


def test_a_dataset_folder_linked_to_nowhere_names_the_link_target(tmp_path):
    """The words a dangling .pt link and a dangling variant link get, not a plain "folder not found"."""
    (tmp_path / "data").symlink_to(tmp_path / "moved")
    with pytest.raises(DatasetError) as caught:
        scan_dataset(tmp_path / "data")
    assert str(caught.value) == f"{tmp_path / 'data'}: a link to {tmp_path / 'moved'}, which does not exist"


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "file.pt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "file.pt")


def test_empty_folder(tmp_path):
    with pytest.raises(DatasetError) as caught:
        scan_dataset(tmp_path)
    assert str(caught.value) == f"{tmp_path}: no .pt files (found 0 other files)"


def test_folder_with_only_other_files(tmp_path):
    (tmp_path / "song.wav").write_bytes(b"RIFF")
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "inner").mkdir()  # a sub-folder; one named *.pt is a problem file (test_data_edge_files)
    with pytest.raises(DatasetError) as caught:
        scan_dataset(tmp_path)
    assert str(caught.value) == f"{tmp_path}: no .pt files (found 2 other files)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_unreadable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0)
    try:
        with pytest.raises(DatasetError, match="permission denied"):
            scan_dataset(folder)
    finally:
        folder.chmod(0o755)


def test_each_sample_file_is_looked_at_once(tmp_path, monkeypatch):
    """A scan of a dataset on a network share pays per ``stat``: the check and the size come from one."""
    paths = write_dataset(tmp_path, count=3, condition_width=16, frames=(25, 50), condition_length=(3, 3))
    looked_at: list[Path] = []
    stat = Path.stat

    def counting_stat(path: Path, **options) -> os.stat_result:
        looked_at.append(path)
        return stat(path, **options)

    monkeypatch.setattr(Path, "stat", counting_stat)
    scan = scan_dataset(tmp_path)
    monkeypatch.undo()
    assert [looked_at.count(path) for path in paths] == [1, 1, 1]
    assert [info.size_bytes for info in scan.samples] == [path.stat().st_size for path in paths]
