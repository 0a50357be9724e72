# Keep-alive client fleets for the end-to-end tests: `clients` threads that each run one
# client loop until the fleet is stopped. Subclasses write the loop (_run) and what it logs.
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Self

JOIN_LIMIT = 10.0  # seconds each client thread gets to finish once the fleet stops


@dataclass
class ClientThreads:
    port: int
    clients: int = 4
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Self:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(JOIN_LIMIT)

    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        """One client's loop: runs until stopping()."""
        raise NotImplementedError
