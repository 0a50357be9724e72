# The `head_parser` fixture runs a test once on each head parser: the C accelerator
# (migproxy/http1/_speedups.c, what the proxy runs) and the pure-Python specification it
# falls back to (parse.py_parse_*). Test modules opt in with
# `pytestmark = pytest.mark.usefixtures("head_parser")`.
from __future__ import annotations

import pytest

from migproxy.http1 import connection, parse
from tests.conftest import unavailable

_PURE = {
    "parse_request_head": parse.py_parse_request_head,
    "parse_response_head": parse.py_parse_response_head,
}


@pytest.fixture(params=["c", "python"])
def head_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "c":
        if not parse.ACCELERATED:
            unavailable("the C head parser was not built (scripts/setup needs gcc and Python.h)")
        return "c"
    # Everywhere the parsers are looked up: the readers, parse itself, and the test module.
    for module in (parse, connection, request.module):
        for name, pure in _PURE.items():
            if hasattr(module, name):
                monkeypatch.setattr(module, name, pure)
    return "python"
