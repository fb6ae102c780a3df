"""The run history's summaries kept between listings: a record unchanged since the last listing is not read
again, a changed, new or gone one is, and a cache that cannot be used changes nothing but the time taken."""

from __future__ import annotations

import json

from acetui.atomic import write_text_atomic
from acetui.estimate.ownership import claim_run, process_owner
from acetui.file_cache import made_by
from acetui.history import list_runs, load_record
from acetui.summary_cache import CACHE_VERSION, cache_file
from tests.tui_support import record_run


def test_an_unchanged_record_is_listed_from_its_summary_and_a_saved_one_read_again(
    checkpoint_root, dataset_dir, isolated_app_dirs
):
    run = record_run(checkpoint_root, dataset_dir, batches=2, seed=1)
    path = isolated_app_dirs.runs / f"{run.run_id}.json"
    (listed,), _ = list_runs()
    assert listed.request.seed == 1 and cache_file().is_file()
    data = json.loads(cache_file().read_text())
    (entry,) = data["files"].values()
    entry["value"]["request"]["seed"] = 7  # what only a listing that does not read the record again shows
    cache_file().write_text(json.dumps(data))
    (again,), _ = list_runs()
    assert again.request.seed == 7 and again.run_id == listed.run_id
    write_text_atomic(path, path.read_text())  # a save, as the engine's: another file in its place
    assert list_runs()[0] == [listed]


def test_a_new_run_is_added_and_a_deleted_one_forgotten(checkpoint_root, dataset_dir, isolated_app_dirs):
    first = record_run(checkpoint_root, dataset_dir, batches=1, seed=1)
    list_runs()
    second = record_run(checkpoint_root, dataset_dir, batches=1, seed=2)
    assert [run.run_id for run in list_runs()[0]] == [second.run_id, first.run_id]
    (isolated_app_dirs.runs / f"{first.run_id}.json").unlink()
    assert [run.run_id for run in list_runs()[0]] == [second.run_id]
    kept = json.loads(cache_file().read_text())["files"]
    assert list(kept) == [str(isolated_app_dirs.runs / f"{second.run_id}.json")]


def test_a_broken_or_foreign_cache_is_rebuilt_and_a_bad_entry_read_again(
    checkpoint_root, dataset_dir, isolated_app_dirs
):
    run = record_run(checkpoint_root, dataset_dir, batches=1, seed=1)
    expected, _ = list_runs()
    data = json.loads(cache_file().read_text())
    (entry,) = data["files"].values()
    entry["value"]["top"] = "layers.99.self_attn.q_proj"  # as another version might have ranked it
    older = json.dumps({**data, "version": "1/acetui 0.0.1"})
    for garbage in ("{ truncated", older, json.dumps([1, 2])):
        cache_file().write_text(garbage)
        assert list_runs() == (expected, [])
        assert json.loads(cache_file().read_text())["version"] == made_by(CACHE_VERSION)
    for field, bad in (("request", {"batches": -3}), ("completed", "1")):  # no request, no count: read again
        data = json.loads(cache_file().read_text())
        (entry,) = data["files"].values()
        entry["value"][field] = {**entry["value"][field], **bad} if isinstance(bad, dict) else bad
        cache_file().write_text(json.dumps(data))
        assert list_runs() == (expected, []) and expected[0].run_id == run.run_id


def test_a_running_record_is_read_at_every_listing(checkpoint_root, dataset_dir, isolated_app_dirs):
    """Whether its owner is at work decides what it shows: running, or interrupted (resumable) once not."""
    run = record_run(checkpoint_root, dataset_dir, batches=3, stop_after=1)
    path = isolated_app_dirs.runs / f"{run.run_id}.json"
    record = json.loads(path.read_text())
    record["status"] = "running"
    record["metadata"]["owner"] = process_owner()  # this process, which runs it only while it holds it
    path.write_text(json.dumps(record))
    assert [listed.status for listed in list_runs()[0]] == ["interrupted"]
    claim = claim_run(load_record(path), path)
    try:
        assert [listed.status for listed in list_runs()[0]] == ["running"]
    finally:
        claim.release()
    assert [listed.status for listed in list_runs()[0]] == ["interrupted"]
    assert not cache_file().exists()


def test_a_stopped_run_being_taken_up_is_listed_as_resuming(checkpoint_root, dataset_dir, isolated_app_dirs):
    """A process taking a run up holds its lock from the start, but its record names it only once the model is
    loaded: meanwhile listings said "cancelled" while resume and delete said "already being taken up"."""
    stopped = record_run(checkpoint_root, dataset_dir, batches=3, stop_after=1)
    path = isolated_app_dirs.runs / f"{stopped.run_id}.json"
    assert [run.status for run in list_runs()[0]] == ["cancelled"]
    claim = claim_run(load_record(path), path)  # as a resume holds it while it scans and loads
    try:
        assert [run.status for run in list_runs()[0]] == ["resuming"]
    finally:
        claim.release()
    assert [run.status for run in list_runs()[0]] == ["cancelled"]
    assert not path.with_suffix(".lock").exists()  # the claim removed it; the listings only looked
