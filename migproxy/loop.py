# The one place that chooses the event loop: uvloop when available, else stdlib asyncio.
from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory(use_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for asyncio.Runner: uvloop's loop if asked for and installed."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a runtime dependency
            pass
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop
