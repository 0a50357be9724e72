# Shared test settings: tools the end-to-end tests need must exist under CI (never skip there).
from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str) -> str:
    """The path of an external tool; fail under CI when it is missing, skip elsewhere."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (apt-get install -y {name})")
        pytest.skip(f"{name} not installed (under CI=true this fails instead)")
    return path
