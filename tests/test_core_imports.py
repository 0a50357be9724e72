# The sans-I/O rule of STYLE.md §3 item 1, checked at run time: importing every module of
# migproxy.http1 and migproxy.policy loads no event loop, network, DNS or metrics library.
# The ruff banned-api config of those packages catches direct imports; this test also catches
# indirect ones (through migproxy.errors or any other module they import).
#
# Each check runs in a fresh interpreter: the test process has already imported asyncio and
# socket (pytest and its plugins do), so its sys.modules proves nothing.
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import migproxy.http1
import migproxy.policy

# `socket` is checked too: a bare `python -c` on the interpreter we support does not load it,
# and nothing in the core imports a stdlib module that would (asyncio, ssl, http, urllib...).
BANNED = ("asyncio", "uvloop", "aiohttp", "dns", "prometheus_client", "socket")

CORE_PACKAGES = (migproxy.http1, migproxy.policy)
CORE_MODULES = sorted(
    [package.__name__ for package in CORE_PACKAGES]
    + [
        info.name
        for package in CORE_PACKAGES
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    ]
)

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_importing(modules: list[str]) -> set[str]:
    """The names in sys.modules of a fresh interpreter after importing `modules`."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = json.loads(result.stdout)
    assert isinstance(loaded, list)
    return {str(name) for name in loaded}


def banned_in(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in BANNED)


def test_core_modules_are_found() -> None:
    # A guard against the discovery silently finding nothing.
    assert {
        "migproxy.http1",
        "migproxy.http1.connection",
        "migproxy.http1.events",
        "migproxy.http1.framing",
        "migproxy.http1.headers",
        "migproxy.http1.parse",
        "migproxy.http1.serialize",
        "migproxy.policy",
        "migproxy.policy.close",
    } <= set(CORE_MODULES)


def test_probe_sees_banned_modules() -> None:
    # The probe itself works: importing asyncio shows up (and brings socket with it).
    assert {"asyncio", "socket"} <= set(banned_in(loaded_after_importing(["asyncio"])))


def test_core_imports_nothing_banned() -> None:
    loaded = loaded_after_importing(CORE_MODULES)
    assert set(CORE_MODULES) <= loaded
    assert banned_in(loaded) == []


@pytest.mark.parametrize("module", CORE_MODULES)
def test_each_core_module_imports_nothing_banned(module: str) -> None:
    assert banned_in(loaded_after_importing([module])) == []
