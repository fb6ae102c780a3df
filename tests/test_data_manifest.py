"""A dataset's manifest.json chooses the samples, as in Side-Step; a broken one falls back to the scan."""

from __future__ import annotations

import json

import pytest

from acetui.data import scan_dataset, write_dataset
from acetui.errors import DatasetError
from acetui.estimate import EstimateRequest, Estimator, RunWarning


@pytest.fixture
def folder(tmp_path):
    write_dataset(tmp_path / "data", count=6, condition_width=64, seed=1, frames=(9, 12))
    return tmp_path / "data"


def test_manifest_lists_the_samples_in_its_order(folder):
    listed = [
        "sample_004.pt",
        str(folder / "sample_001.pt"),
        ".\\sample_002.pt",
        "",
        7,
        "sample_004.pt",
        "gone.pt",
    ]
    (folder / "manifest.json").write_text(json.dumps({"samples": listed, "num_samples": 4}))
    scan = scan_dataset(folder)
    assert [info.path.name for info in scan.samples] == ["sample_004.pt", "sample_001.pt", "sample_002.pt"]
    assert [(problem.path.name, problem.reason) for problem in scan.problems] == [("gone.pt", "file not found")]
    assert "manifest.json (4 listed)" in scan.notes[0]
    assert scan.notes[1].startswith("3 .pt files in") and "not used" in scan.notes[1]


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"samples": "a.pt"}', "[]", '{"samples": ["~acetui_no_such_user/a.pt"]}'],
    ids=["invalid", "not-list", "array", "unknown-home"],
)
def test_a_broken_manifest_is_ignored_with_a_note(folder, content):
    (folder / "manifest.json").write_text(content)
    scan = scan_dataset(folder)
    assert len(scan.samples) == 6
    assert len(scan.notes) == 1 and "ignored; the folder was scanned instead" in scan.notes[0]


def test_an_empty_manifest_is_an_error(folder):
    (folder / "manifest.json").write_text('{"samples": []}')
    with pytest.raises(DatasetError, match="manifest.json: lists no samples"):
        scan_dataset(folder)


def test_the_run_reports_the_manifest(checkpoint_root, folder):
    (folder / "manifest.json").write_text(json.dumps({"samples": [f"sample_00{i}.pt" for i in range(5)]}))
    events = []
    result = Estimator(EstimateRequest(checkpoint_root, "turbo", folder, batches=2), on_event=events.append).run()
    warnings = [event.message for event in events if isinstance(event, RunWarning)]
    assert any("manifest.json (5 listed)" in message for message in warnings)
    assert result.metadata["dataset"]["samples"] == 5
    assert all("sample_005.pt" not in path for batch in result.batches for path in batch.samples)
