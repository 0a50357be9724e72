from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.servers import run_backend


@pytest.fixture(scope="session")
def backend_port() -> Iterator[int]:
    """The bundled demo backend, shared by the tests of a session."""
    with run_backend() as port:
        yield port
