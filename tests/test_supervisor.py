# The supervisor's pure helpers (its processes are tested end to end in tests/e2e/test_workers.py).
from __future__ import annotations

import pytest

from migproxy.supervisor import _json_or_text


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        pytest.param('{"reloaded": true}', {"reloaded": True}, id="json"),
        pytest.param(
            "500 Internal Server Error\n\nServer got itself in trouble\n",
            {"error": "500 Internal Server Error\n\nServer got itself in trouble"},
            id="aiohttp-500",
        ),
        pytest.param("", {"error": ""}, id="empty"),
    ],
)
def test_a_workers_answer_is_shown_whether_or_not_it_is_json(answer: str, shown: object) -> None:
    assert _json_or_text(answer) == shown
