"""Opening a Side-Step file from the results view (key ``i``) at 80x24: a malformed fisher map is refused
with the one line every reader gives, and the dialog stays open for another path."""

from __future__ import annotations

import json

import pytest

from acetui.estimate.imported import load_ranking
from acetui.tui.app import make_app
from acetui.tui.screens.open_ranking import OpenRankingScreen
from acetui.tui.screens.results import ResultsScreen
from tests.test_compare import BAD_FISHER_MAPS
from tests.tui_support import SIZE, open_screen, submit

ESTIMATE = [{"module": f"decoder.layers.{n}.self_attn.q_proj", "sensitivity": 4.0 - n} for n in range(4)]


@pytest.mark.parametrize("case", BAD_FISHER_MAPS)
async def test_a_malformed_fisher_map_is_refused_in_one_line(tmp_path, case):
    estimate = tmp_path / "estimate.json"
    estimate.write_text(json.dumps(ESTIMATE))
    content, problem = BAD_FISHER_MAPS[case]
    broken = tmp_path / "fisher_map.json"
    broken.write_text(json.dumps(content))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_screen(pilot, ResultsScreen(load_ranking(estimate)))
        await pilot.press("i")
        assert isinstance(app.screen, OpenRankingScreen)
        await submit(pilot, "path", str(broken))
        assert isinstance(app.screen, OpenRankingScreen)
        errors = [note.message for note in app._notifications if note.severity == "error"]
        assert errors == [f"{broken}: {problem}"]
