# The open-files limit (RLIMIT_NOFILE): how many connections the proxy can hold at once.
#
# Each client connection is one descriptor, and its exchange needs an upstream connection,
# another one (pooled between exchanges), so a proxy holds about two per client. Processes
# usually start with a soft limit of 1024 under a hard limit far above it (systemd: 1024 /
# 524288), which would stop migproxy at about 500 clients. Like nginx (worker_rlimit_nofile)
# and HAProxy, it raises the soft limit to the hard one at start, and says what it got.
# Past the limit, a client whose upstream connection cannot be opened gets a 502 ("Too many
# open files"), and the event loop accepts and closes the connections it cannot hold.
from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("migproxy")

# Below this many descriptors the limit is worth a warning: fewer than ~1000 clients at once.
LOW_LIMIT = 2048
_NR_OPEN = Path("/proc/sys/fs/nr_open")  # the kernel's ceiling for RLIMIT_NOFILE (Linux)
_DEFAULT_NR_OPEN = 1 << 20


def target_limit(soft: int, hard: int, nr_open: int) -> int:
    """The soft limit to ask for: the hard limit, or the kernel's ceiling if it is unlimited."""
    if soft == resource.RLIM_INFINITY:
        return soft
    if hard == resource.RLIM_INFINITY:
        return max(soft, nr_open)
    return max(soft, hard)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE as far as allowed, log the result, return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(_NR_OPEN.read_text())
    except (OSError, ValueError):
        nr_open = _DEFAULT_NR_OPEN
    target = target_limit(soft, hard, nr_open)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as err:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, err)
            target = soft
        else:
            log.info("open files limit raised from %d to %d", soft, target)
    if target < LOW_LIMIT:
        log.warning(
            "open files limit is %d: room for about %d clients at once per process; raise the "
            "hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn, docker --ulimit nofile=)",
            target,
            target // 2,
        )
    return target
