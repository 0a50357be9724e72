# Live control of a running proxy: configuration reloads (SIGHUP, a change of the config
# file, POST /reload) and the migration epoch.
#
# Rules:
# - A new configuration is validated whole before anything changes. If it is invalid, or
#   changes something that only a restart can apply (listening sockets, the admin endpoint,
#   the upstream name and how it is resolved, balanced and checked), nothing changes: the
#   error is logged as `FILE: key: reason`, counted, and returned to the API caller.
# - A reload never touches a connection: the new policies apply to each connection at its
#   next response (ProxyContext.apply_config).
# - The file is watched by content, not by modification time or inode: that survives editors
#   that write a new file and rename it, and the symlink swap of Kubernetes ConfigMaps.
# - Under a supervisor, one worker samples the watched DNS name for all of them, and every
#   epoch a worker starts reaches the others, and any worker started again, through a file
#   in the run directory (SharedEpoch).
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from migproxy.config import Config, ConfigError, load_config
from migproxy.proxy import ProxyContext

log = logging.getLogger("migproxy")

# Settings applied at start only, by section; in [upstream] every key but these.
RESTART_SECTIONS = ("listen", "admin", "metrics", "server")
RELOADABLE_UPSTREAM_KEYS = frozenset(
    {"connect_timeout", "response_timeout", "max_age", "tcp_keepalive"}
)
WATCH_INTERVAL = 1.0  # seconds between two reads of the config file


def restart_needed(old: Config, new: Config) -> str | None:
    """The first changed key that a reload cannot apply, or None."""
    for section in RESTART_SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        for field in dataclasses.fields(before):
            if getattr(before, field.name) != getattr(after, field.name):
                return f"{section}.{field.name}"
    for field in dataclasses.fields(old.upstream):
        if field.name in RELOADABLE_UPSTREAM_KEYS:
            continue
        if getattr(old.upstream, field.name) != getattr(new.upstream, field.name):
            return f"upstream.{field.name}"
    return None


class Reloader:
    """Loads the config file again on request and applies it to the running proxy."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        ctx: ProxyContext,
        adjust: Callable[[Config], Config] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.ctx = ctx
        self.adjust = adjust  # what this process changes in a loaded config (a worker's admin)
        self.last_error = ""  # why the last reload was refused ("" after a success)
        self._loaded = _read(self.path)  # the file's content when it was last loaded

    def reload(self, trigger: str) -> tuple[bool, str]:
        """Load and apply the file; return (applied, message). Never raises ConfigError."""
        self._loaded = _read(self.path)
        ctx = self.ctx
        try:
            new = load_config(self.path)
            if self.adjust is not None:
                new = self.adjust(new)
            key = restart_needed(ctx.config, new)
            if key is not None:
                raise ConfigError(
                    self.path, key, "changed; a restart is needed to apply it (nothing changed)"
                )
        except ConfigError as err:
            self.last_error = str(err)
            log.error("reload (%s) refused: %s", trigger, err)
            ctx.count_reload(ok=False)
            return False, str(err)
        changes = describe_changes(ctx.config, new)
        ctx.apply_config(new)
        ctx.count_reload(ok=True)
        self.last_error = ""
        message = f"reloaded ({trigger}): " + (", ".join(changes) or "no change")
        log.info("%s", message)
        return True, message

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Reload whenever the file's content changes (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            content = _read(self.path)
            if content is not None and content != self._loaded:
                self.reload("file changed")


def describe_changes(old: Config, new: Config) -> list[str]:
    """The changed keys, as "section.key=value", for the log line of a reload."""
    changes = []
    for field in dataclasses.fields(old):
        if field.name == "source":
            continue
        before, after = getattr(old, field.name), getattr(new, field.name)
        if before == after:
            continue
        for key in dataclasses.fields(before):
            value = getattr(after, key.name)
            if getattr(before, key.name) != value:
                changes.append(f"{field.name}.{key.name}={value}")
    return changes


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` so that a reader sees its old content or the new, never a part of it."""
    staged = path.with_suffix(".tmp")
    staged.write_bytes(data)
    staged.rename(path)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None  # being replaced, or gone: try again at the next poll


class SharedEpoch:
    """The migration epoch of a supervised proxy, the same in every worker, through a file.

    Whichever way a worker starts an epoch (worker 0's sampling of [migration] watch_name,
    POST /migration/epoch, a reload that changes [migration] epoch), the file gets it; every
    worker follows the file (read once a second), and a worker started again takes the epoch
    from it before it serves, so a restart does not lose an epoch its siblings have.
    """

    def __init__(self, path: Path, ctx: ProxyContext) -> None:
        self.path = path
        self.ctx = ctx
        self._seen: bytes | None = None  # the file's content this worker has in force

    def attach(self) -> None:
        """Take the epoch the file holds, if any, and write every epoch started from now on."""
        data = _read(str(self.path))
        if data is not None:
            self._take(data)
        self.ctx.epoch_listener = self._record

    async def follow(self, interval: float = WATCH_INTERVAL) -> None:
        """Start every epoch another worker writes (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            data = _read(str(self.path))
            if data is not None and data != self._seen:
                self._take(data)

    def _record(self, epoch: float | None, closes_from: float | None) -> None:
        data = json.dumps({"epoch": epoch, "closes_from": closes_from}).encode()
        if data != self._seen:
            self._seen = data
            write_atomically(self.path, data)

    def _take(self, data: bytes) -> None:
        self._seen = data
        try:
            shared = json.loads(data)
            epoch, closes_from = shared["epoch"], shared["closes_from"]
            self.ctx.set_epoch(
                None if epoch is None else float(epoch),
                None if closes_from is None else float(closes_from),
            )
        except (ValueError, KeyError, TypeError) as err:
            log.error("%s: unreadable epoch file: %s", self.path, err)
