# Shared test settings: tools the end-to-end tests need must exist under CI (never skip there).
from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"


# Debian packages of the tools whose package has another name (.ci/run installs them).
PACKAGES = {"nginx": "nginx-light", "promtool": "prometheus", "nft": "nftables", "ss": "iproute2"}


def unavailable(reason: str) -> NoReturn:
    """Something a test needs is missing from this machine: fail under CI (the CI machine
    must have it), skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(f"{reason} (under CI=true this fails instead)")


def require_tool(name: str) -> str:
    """The path of an external tool; fail under CI when it is missing, skip elsewhere."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        unavailable(f"{name} not installed (apt-get install -y {PACKAGES.get(name, name)})")
    return path


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop, not running: for tests that drive protocols and contexts by hand."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()
