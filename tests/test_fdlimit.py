# Pure tests of migproxy.fdlimit.target_limit: which soft open-files limit the proxy asks for.
from __future__ import annotations

import resource

import pytest

from migproxy.fdlimit import target_limit

INF = resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("soft", "hard", "nr_open", "expected"),
    [
        pytest.param(1024, 524288, 1048576, 524288, id="systemd-default"),
        pytest.param(1024, 1024, 1048576, 1024, id="soft-is-hard"),
        pytest.param(1024, INF, 1048576, 1048576, id="unlimited-hard-takes-nr-open"),
        pytest.param(2_000_000, INF, 1048576, 2_000_000, id="never-lowered"),
        pytest.param(INF, INF, 1048576, INF, id="unlimited"),
    ],
)
def test_target_limit(soft: int, hard: int, nr_open: int, expected: int) -> None:
    assert target_limit(soft, hard, nr_open) == expected
