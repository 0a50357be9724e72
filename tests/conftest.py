# Shared test settings: tools the end-to-end tests need must exist under CI (never skip there).
from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI") == "true"


# Debian packages of the tools whose package has another name (.ci/run installs them).
PACKAGES = {"nginx": "nginx-light", "promtool": "prometheus", "nft": "nftables", "ss": "iproute2"}


def require_tool(name: str) -> str:
    """The path of an external tool; fail under CI when it is missing, skip elsewhere."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        if IN_CI:
            package = PACKAGES.get(name, name)
            pytest.fail(f"{name} is required in CI (apt-get install -y {package})")
        pytest.skip(f"{name} not installed (under CI=true this fails instead)")
    return path
