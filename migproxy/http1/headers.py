# Header fields as the proxy needs them: the raw lines as received (forwarded byte for byte)
# next to their lower-cased names (looked up), plus the comma-list helpers of RFC 9110 §5.6.1
# and the hop-by-hop rules of RFC 9110 §7.6.1.
#
# Rule: a Fields object never re-serialises a line it did not have to touch; the proxy drops
# lines, it does not rewrite them.
from __future__ import annotations

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


class Fields:
    """The field lines of one head: `lines[i]` is the raw "Name: value" of `names[i]`."""

    __slots__ = ("lines", "names")

    def __init__(self, lines: list[bytes], names: list[bytes]) -> None:
        self.lines = lines
        self.names = names

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bytes, bytes]]) -> Fields:
        lines: list[bytes] = []
        names: list[bytes] = []
        for name, value in pairs:
            lines.append(name + b": " + value)
            names.append(name.lower())
        return cls(lines, names)

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
        out: list[bytes] = []
        for value in self.get_all(name):
            for token in value.lower().split(b","):
                token = token.strip(b" \t")
                if token:
                    out.append(token)
        return out

    def without(self, drop: frozenset[bytes] | set[bytes]) -> list[bytes]:
        """The raw lines whose names are not in `drop`."""
        return [line for line, n in zip(self.lines, self.names, strict=True) if n not in drop]

    def __len__(self) -> int:
        return len(self.lines)

    def __repr__(self) -> str:
        return f"Fields({self.lines!r})"


def hop_by_hop_names(connection_tokens: list[bytes]) -> frozenset[bytes] | set[bytes]:
    """The field names to strip from a message whose Connection header lists these tokens."""
    if not connection_tokens:
        return HOP_BY_HOP
    return HOP_BY_HOP.union(connection_tokens)
