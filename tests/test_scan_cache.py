"""What a scan found in each valid sample is kept between scans: an unchanged file is not read again, a
changed, just written or bad one is, per model widths, and a cache that cannot be used changes nothing but
the time taken."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from acetui.data import scan_dataset, write_dataset
from acetui.data.scan_cache import SETTLED_SECONDS, cache_location
from acetui.file_cache import file_key

WIDTH = 16


@pytest.fixture(scope="module")
def settled(tmp_path_factory) -> Path:
    """A folder of samples written long enough ago for a scan to keep them (one wait for the module)."""
    folder = tmp_path_factory.mktemp("settled")
    write_dataset(folder / "kept", count=3, condition_width=WIDTH, frames=(20, 40), condition_length=(4, 4))
    write_dataset(folder / "changed", count=3, condition_width=WIDTH, frames=(20, 40), condition_length=(4, 4))
    time.sleep(SETTLED_SECONDS + 0.1)
    return folder


def _cached(folder: Path, width: int = WIDTH) -> dict:
    location = cache_location(folder, width, 128)
    return json.loads(location.read_text())["files"] if location.is_file() else {}


def test_an_unchanged_sample_is_taken_from_the_cache_and_an_unusable_entry_read_again(settled):
    folder = settled / "kept"
    first = scan_dataset(folder, condition_width=WIDTH)
    names = [info.path.name for info in first.samples]
    assert sorted(_cached(folder)) == names
    _tamper(folder, {names[0]: lambda value: [999, *value[1:]], names[1]: lambda value: ["not", "sizes"]})
    again = scan_dataset(folder, condition_width=WIDTH)
    assert again.samples[0].frames == 999
    assert again.samples[1:] == first.samples[1:]
    assert _cached(folder)[names[1]]["value"] == json.loads(json.dumps(list(_value(first.samples[1]))))


def _tamper(folder: Path, changes: dict) -> None:
    """Change kept values (frames only a scan that does not read the file can report) in place."""
    location = cache_location(folder, WIDTH, 128)
    data = json.loads(location.read_text())
    for name, change in changes.items():
        data["files"][name]["value"] = change(data["files"][name]["value"])
    location.write_text(json.dumps(data))


def _value(info) -> tuple:
    return (info.frames, info.condition_length, info.condition_width, info.size_bytes, info.content)


def test_a_folder_spelled_otherwise_shares_what_was_kept(settled, tmp_path, monkeypatch):
    """``acetui scan data`` then ``acetui estimate -d data`` (a run takes the absolute path), or the folder
    through a link: the same files, the same entries; each spelling evicted the other's."""
    folder = settled / "kept"
    first = scan_dataset(folder, condition_width=WIDTH)
    _tamper(folder, {first.samples[0].path.name: lambda value: [999, *value[1:]]})
    (tmp_path / "link").symlink_to(folder)
    monkeypatch.chdir(settled)
    for spelling in (tmp_path / "link", Path("kept"), folder):
        assert scan_dataset(spelling, condition_width=WIDTH).samples[0].frames == 999
    assert sorted(_cached(folder)) == [info.path.name for info in first.samples]


def test_a_changed_sample_is_read_again_and_not_kept_while_just_written(settled):
    folder = settled / "changed"
    before = scan_dataset(folder, condition_width=WIDTH).samples
    path = before[1].path
    data = torch.load(path, weights_only=True)
    torch.save({**data, "encoder_hidden_states": torch.randn_like(data["encoder_hidden_states"])}, path)
    after = scan_dataset(folder, condition_width=WIDTH).samples
    assert after[1].size_bytes == before[1].size_bytes and after[1].content != before[1].content
    assert after[0] == before[0] and after[2] == before[2]
    assert _cached(folder)[path.name]["key"] != list(file_key(path))  # its old entry, never used again


def test_each_model_width_has_its_own_cache_and_bad_files_are_not_kept(settled):
    folder = settled / "kept"
    wrong = scan_dataset(folder, condition_width=WIDTH * 2)
    assert not wrong.samples and len(wrong.problems) == 3
    assert _cached(folder, WIDTH * 2) == {}
    assert len(scan_dataset(folder, condition_width=WIDTH).samples) == 3


def test_just_written_samples_are_read_at_every_scan(tmp_path):
    write_dataset(tmp_path, count=2, condition_width=WIDTH)
    assert len(scan_dataset(tmp_path, condition_width=WIDTH).samples) == 2
    assert _cached(tmp_path) == {}


def test_a_stopped_scan_keeps_what_it_read(settled, isolated_app_dirs):
    class Stop(Exception):
        pass

    def stop_at_the_third(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    folder = settled / "kept"
    with pytest.raises(Stop):
        scan_dataset(folder, condition_width=WIDTH, on_file=stop_at_the_third)
    assert sorted(_cached(folder)) == [f"sample_00{number}.pt" for number in range(2)]


def test_a_cache_that_cannot_be_written_or_read_changes_nothing(settled, isolated_app_dirs):
    folder = settled / "kept"
    expected = scan_dataset(folder, condition_width=WIDTH)
    location = cache_location(folder, WIDTH, 128)
    for garbage in ("{ truncated", json.dumps([1, 2]), json.dumps({"version": "1/acetui 0.0.1", "files": {}})):
        location.write_text(garbage)
        assert scan_dataset(folder, condition_width=WIDTH) == expected
        assert len(_cached(folder)) == 3
    location.unlink()
    location.parent.rmdir()
    location.parent.write_text("a file where the cache folder goes")
    assert scan_dataset(folder, condition_width=WIDTH) == expected


def test_a_manifests_absolute_paths_share_what_was_kept_however_the_folder_is_spelled(tmp_path, monkeypatch):
    folder = tmp_path / "listed"
    write_dataset(folder, count=2, condition_width=WIDTH, frames=(20, 40), condition_length=(4, 4))
    manifest = {"samples": [str(folder / "sample_000.pt"), "sample_001.pt"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    time.sleep(SETTLED_SECONDS + 0.1)
    monkeypatch.chdir(tmp_path)
    first = scan_dataset(Path("listed"), condition_width=WIDTH)
    assert len(first.samples) == 2 and sorted(_cached(folder)) == ["sample_000.pt", "sample_001.pt"]
    _tamper(folder, {"sample_000.pt": lambda value: [999, *value[1:]]})
    assert scan_dataset(folder, condition_width=WIDTH).samples[0].frames == 999
    assert sorted(_cached(folder)) == ["sample_000.pt", "sample_001.pt"]
