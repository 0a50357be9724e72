# Header fields as the proxy needs them. A Fields object wraps the raw field block of a head
# (every line ending in CRLF, exactly as received) and splits it into lines and lower-cased
# names only when someone asks: the common exchange forwards the block untouched.
#
# Also here: the comma-list helpers of RFC 9110 §5.6.1 and the hop-by-hop rules of
# RFC 9110 §7.6.1. Rule: the proxy drops lines; it never rewrites a line it keeps.
from __future__ import annotations

import re
from collections.abc import Iterable

# RFC 9110 §7.6.1 and common practice: fields that describe one hop only. Connection also names
# more of them per message (handled by hop_by_hop_names).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Removes every line of a static hop-by-hop field from a validated field block preceded by an
# LF, in one pass: "\nName: value\r" goes, leaving the previous line's CR and this line's LF.
# The literal LF prefix lets the regex engine jump between line starts.
_HOP_BY_HOP_LINES = re.compile(rb"\n(?:" + b"|".join(sorted(HOP_BY_HOP)) + rb"):[^\r]*\r", re.I)
_USUAL_CONNECTION_LINES = {
    token: b"Connection: " + token + b"\r\n" for token in (b"keep-alive", b"close")
}
# Connection tokens never honoured as field names to remove: the options (they name no field),
# and the fields that frame or route the message. Dropping Content-Length or Host because a
# peer listed them in Connection would let that peer change how the next hop frames the
# message: request smuggling by another name.
CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
_NEVER_DROPPED = CONNECTION_OPTIONS | {b"content-length", b"host"}


class Fields:
    """The field block of one head: `raw` as received, `lines[i]` is the line of `names[i]`."""

    __slots__ = ("raw", "single_connection_line", "_lines", "_names")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw  # validated field lines, each ending in CRLF; b"" when there are none
        # Set by the parser: the only hop-by-hop field is one Connection line.
        self.single_connection_line = False
        self._lines: list[bytes] | None = None
        self._names: list[bytes] | None = None

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bytes, bytes]]) -> Fields:
        return cls(b"".join(name + b": " + value + b"\r\n" for name, value in pairs))

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = self.raw[:-2].split(b"\r\n") if self.raw else []
        return self._lines

    @property
    def names(self) -> list[bytes]:
        if self._names is None:
            self._names = [line[: line.index(b":")].lower() for line in self.lines]
        return self._names

    def get_all(self, name: bytes) -> list[bytes]:
        """All values of `name` (lower case), leading and trailing whitespace removed."""
        cut = len(name) + 1
        return [
            line[cut:].strip(b" \t")
            for line, n in zip(self.lines, self.names, strict=True)
            if n == name
        ]

    def get(self, name: bytes) -> bytes | None:
        """The first value of `name` (lower case), or None."""
        try:
            i = self.names.index(name)
        except ValueError:
            return None
        return self.lines[i][len(name) + 1 :].strip(b" \t")

    def tokens(self, name: bytes) -> list[bytes]:
        """The lower-cased comma-separated tokens of every `name` line (RFC 9110 §5.6.1)."""
        return split_tokens(self.get_all(name))

    def without(self, drop: frozenset[bytes] | set[bytes]) -> list[bytes]:
        """The raw lines whose names are not in `drop`."""
        return [line for line, n in zip(self.lines, self.names, strict=True) if n not in drop]

    def without_hop_by_hop(self, connection: list[bytes]) -> bytes:
        """The field block without hop-by-hop fields, given the message's Connection tokens."""
        if self.single_connection_line and len(connection) == 1:
            # The common "Connection: keep-alive" (or close), spelled the usual way: cut it.
            line = _USUAL_CONNECTION_LINES.get(connection[0])
            if line is not None:
                i = self.raw.find(line)
                if i == 0 or (i > 0 and self.raw[i - 1] == 10):  # at a line start (10 = LF)
                    return self.raw[:i] + self.raw[i + len(line) :]
        drop = hop_by_hop_names(connection)
        if drop is HOP_BY_HOP:
            return _HOP_BY_HOP_LINES.sub(b"", b"\n" + self.raw)[1:]
        return b"".join(line + b"\r\n" for line in self.without(drop))

    def __len__(self) -> int:
        return len(self.lines)

    def __repr__(self) -> str:
        return f"Fields({self.lines!r})"


def split_tokens(values: list[bytes]) -> list[bytes]:
    """The lower-cased tokens of comma-separated list values, empty elements skipped."""
    out: list[bytes] = []
    for value in values:
        for token in value.lower().split(b","):
            token = token.strip(b" \t")
            if token:
                out.append(token)
    return out


def hop_by_hop_names(connection_tokens: list[bytes]) -> frozenset[bytes] | set[bytes]:
    """The field names to strip from a message whose Connection header lists these tokens."""
    extra = [t for t in connection_tokens if t not in _NEVER_DROPPED]
    if not extra:
        return HOP_BY_HOP
    return HOP_BY_HOP.union(extra)
