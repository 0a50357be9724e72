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
#   in the run directory (SharedEpoch); a worker started again takes the config its siblings
#   have in force from there too (config_in_force).
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from migproxy.config import (
    Config,
    ConfigError,
    load_config,
    read_config_file,
    read_regular_file,
)
from migproxy.proxy import ProxyContext

log = logging.getLogger("migproxy")
CONFIG_IN_FORCE = "config.toml"  # in a supervisor's run directory: see config_in_force()

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
        *,
        loaded: bytes | None = None,
        in_force: Config | None = None,
        adjust: Callable[[Config], Config] | None = None,
        applied: Callable[[bytes], None] | None = None,
    ) -> None:
        """`loaded`: the content of the config in force (default: the file's now);
        `in_force`: that config as loaded, before `adjust` (default: ctx.config); `adjust`:
        what this process changes in a loaded config (a worker's admin address); `applied`:
        told the content of every config applied."""
        self.path = os.fspath(path)
        self.ctx = ctx
        self.adjust = adjust
        self.applied = applied
        self.last_error = ""  # why the last reload was refused ("" after a success)
        self._loaded = loaded if loaded is not None else _read(self.path)
        # What a restart would be needed for is judged on configs as loaded: an adjusted
        # config hides changes (a worker's admin address is always its own).
        self._in_force = in_force if in_force is not None else ctx.config

    def reload(self, trigger: str) -> tuple[bool, str]:
        """Load and apply the file; return (applied, message). Never raises ConfigError."""
        ctx = self.ctx
        try:
            content = self._loaded = read_config_file(self.path)
            loaded = load_config(self.path, content)
            key = restart_needed(self._in_force, loaded)
            if key is not None:
                raise ConfigError(
                    self.path, key, "changed; a restart is needed to apply it (nothing changed)"
                )
        except ConfigError as err:
            self.last_error = str(err)
            log.error("reload (%s) refused: %s", trigger, err)
            ctx.count_reload(ok=False)
            return False, str(err)
        new = self.adjust(loaded) if self.adjust is not None else loaded
        changes = describe_changes(ctx.config, new)
        ctx.apply_config(new)
        ctx.count_reload(ok=True)
        self._in_force = loaded
        if self.applied is not None:
            self.applied(content)
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
                try:
                    self.reload("file changed")
                except Exception:  # a bug must not end the watch: later changes still count
                    log.exception("reload (file changed) failed")


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


def config_in_force(path: str, run_dir: Path) -> tuple[Config, bytes]:
    """The config of a worker about to start: the one its siblings have in force.

    The supervisor keeps the content of the config it starts with in the run directory, and
    the workers keep there the content of each config they apply. A worker started again
    takes that, not the file as it is now: the file may hold a change that the others
    refused as "needs a restart", or one they have not reloaded yet (its own watch of the
    file then tries it, as theirs did). Kept content that does not load (written by an older
    migproxy, say) is logged and the file is read instead.

    Raises:
        ConfigError: the file cannot be read or is invalid.
    """
    kept = run_dir / CONFIG_IN_FORCE
    content = _read(str(kept))
    if content is not None:
        try:
            return load_config(path, content), content
        except ConfigError as err:
            log.error("%s: %s: %s; reading %s instead", kept, err.key, err.reason, path)
    elif kept.exists():
        log.error("%s: cannot be read; reading %s instead", kept, path)
    content = read_config_file(path)
    return load_config(path, content), content


def keep_in_force(run_dir: Path, content: bytes) -> None:
    """Keep `content`, just applied, as the config in force (see config_in_force)."""
    _share(run_dir / CONFIG_IN_FORCE, content, "keep the config in force")


def _share(path: Path, data: bytes, what: str) -> None:
    """Write what the other workers read: a failure is logged, since what was written is in
    force in this worker all the same (only the siblings, or a restarted worker, miss it)."""
    try:
        write_atomically(path, data)
    except OSError as err:
        log.error("%s: cannot %s: %s", path, what, err.strerror or err)


def write_atomically(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write `path` so that a reader sees its old content or the new, never a part of it.

    Several processes may write one path at once: each stages in a file of its own. With
    `replace=False` an existing file is kept, and False returned.
    """
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_bytes(data)
    try:
        if not replace:
            try:
                os.link(staged, path)  # atomic, and fails if the path exists
            except FileExistsError:
                return False
            return True
        staged.rename(path)
        return True
    finally:
        staged.unlink(missing_ok=True)


def _read(path: str) -> bytes | None:
    try:
        return read_regular_file(path)
    except OSError:
        return None  # being replaced, or gone: try again at the next poll


class SharedEpoch:
    """The migration epoch of a supervised proxy, the same in every worker, through a file.

    Whichever way a worker starts an epoch (worker 0's sampling of [migration] watch_name,
    POST /migration/epoch, a reload that changes [migration] epoch), the file gets it; every
    worker follows the file (read once a second), and a worker started again takes the epoch
    from it before it serves, so a restart does not lose an epoch its siblings have.

    Workers reload a changed config file each in its own time. A second file holds the last
    [migration] epoch (as configured) that a worker applied: a worker that reloads the same
    change later takes the shared epoch, that change's or a newer one, instead of putting the
    configured one back over it (for "now", a later time of its own).
    """

    def __init__(self, path: Path, ctx: ProxyContext) -> None:
        self.path = path
        self.configured_path = path.with_suffix(".configured")
        self.ctx = ctx
        self._seen: bytes | None = None  # the file's content when last read or written
        self._shared: tuple[float | None, float | None] | None = None  # (epoch, closes_from)

    def attach(self) -> None:
        """Take the epoch the file holds (or, first, write this worker's), and from now on
        write every epoch started here and decide on configured ones."""
        configured = self.ctx.config.migration.epoch.text.encode()
        write_atomically(self.configured_path, configured, replace=False)
        data = self._encode(*self.ctx.epoch_args)
        if not write_atomically(self.path, data, replace=False):  # a sibling was first
            data = _read(str(self.path)) or b""
        self._take(data)
        self.ctx.epoch_listener = self._record
        self.ctx.configured_epoch = self._configured

    async def follow(self, interval: float = WATCH_INTERVAL) -> None:
        """Start every epoch another worker writes (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            data = _read(str(self.path))
            if data is not None and data != self._seen:
                self._take(data)

    @staticmethod
    def _encode(epoch: float | None, closes_from: float | None) -> bytes:
        return json.dumps({"epoch": epoch, "closes_from": closes_from}).encode()

    def _record(self, epoch: float | None, closes_from: float | None) -> None:
        """ctx.set_epoch started an epoch: write it, unless it came from the file."""
        if (epoch, closes_from) == self._shared:
            return
        self._shared = (epoch, closes_from)
        data = self._seen = self._encode(epoch, closes_from)
        _share(self.path, data, "share the epoch")

    def _configured(self, epoch: float | None) -> None:
        """A reload changed [migration] epoch to `epoch` (ctx.config is the new config)."""
        configured = self.ctx.config.migration.epoch.text.encode()
        if _read(str(self.configured_path)) == configured:
            # A sibling applied this change first: its epoch, or a newer one, stands.
            data = _read(str(self.path))
            if data is not None:
                self._take(data)
            return
        self.ctx.set_epoch(epoch)  # written to the epoch file before the change is marked
        _share(self.configured_path, configured, "share the epoch")

    def _take(self, data: bytes) -> None:
        self._seen = data
        try:
            shared = json.loads(data)
            epoch, closes_from = shared["epoch"], shared["closes_from"]
            taken = (
                None if epoch is None else float(epoch),
                None if closes_from is None else float(closes_from),
            )
        except (ValueError, KeyError, TypeError) as err:
            log.error("%s: unreadable epoch file: %s", self.path, err)
            return
        self._shared = taken
        self.ctx.set_epoch(*taken)
