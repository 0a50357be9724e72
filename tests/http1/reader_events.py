# Helpers shared by the RequestReader and ResponseReader tests: bytes in, events out as tuples.
from __future__ import annotations

from collections.abc import Iterable

from migproxy.http1 import events
from migproxy.http1.connection import ReaderState, RequestReader, ResponseReader

# Either reader: the helpers use only what both have (receive_data, receive_eof, next_event,
# start_next_cycle, state).
Reader = RequestReader | ResponseReader
Summary = tuple[object, ...]

END: Summary = ("end", ())
PAUSE: Summary = ("paused",)  # next_event() said PAUSED
CLOSED: Summary = ("closed",)


def req(
    method: bytes,
    target: bytes,
    *lines: bytes,
    version: int = 11,
    body: events.BodyKind = events.BodyKind.NONE,
    length: int = 0,
    keep_alive: bool = True,
    expect_continue: bool = False,
    upgrade: bytes | None = None,
) -> Summary:
    """The summary of the RequestHead we expect."""
    return (
        "head",
        method,
        target,
        version,
        lines,
        body,
        length,
        keep_alive,
        expect_continue,
        upgrade,
    )


def resp(
    status: int,
    *lines: bytes,
    reason: bytes = b"OK",
    version: int = 11,
    body: events.BodyKind = events.BodyKind.NONE,
    length: int = 0,
    keep_alive: bool = True,
) -> Summary:
    """The summary of the ResponseHead we expect."""
    return ("head", status, reason, version, lines, body, length, keep_alive)


def data(payload: bytes) -> Summary:
    return ("data", payload)


def end(*trailers: bytes) -> Summary:
    return ("end", trailers)


def summarize(ev: events.Event) -> Summary:
    """A plain tuple for an event: Fields has no equality."""
    if isinstance(ev, events.RequestHead):
        return req(
            ev.method,
            ev.target,
            *ev.fields.lines,
            version=ev.version,
            body=ev.body,
            length=ev.length,
            keep_alive=ev.keep_alive,
            expect_continue=ev.expect_continue,
            upgrade=ev.upgrade,
        )
    if isinstance(ev, events.ResponseHead):
        return resp(
            ev.status,
            *ev.fields.lines,
            reason=ev.reason,
            version=ev.version,
            body=ev.body,
            length=ev.length,
            keep_alive=ev.keep_alive,
        )
    if isinstance(ev, events.Data):
        return data(ev.data)
    if isinstance(ev, events.EndOfMessage):
        return end(*ev.trailers)
    if isinstance(ev, events.ConnectionClosed):
        return CLOSED
    raise AssertionError(f"a reader produced {ev!r}")


def state_of(reader: Reader) -> ReaderState:
    """The reader's state, read through a call: mypy would otherwise keep an attribute
    narrowed by one assert across the method calls that change it."""
    return reader.state


def drain(reader: Reader, resume: bool = True) -> list[Summary]:
    """next_event() until NEED_DATA. After a PAUSED, `resume` calls start_next_cycle() and
    goes on, as the proxy does for a client; without it the drain stops there (one exchange:
    a ResponseReader waits for the next expect())."""
    out: list[Summary] = []
    while True:
        ev = reader.next_event()
        if ev is events.NEED_DATA:
            return out
        if ev is events.PAUSED:
            out.append(PAUSE)
            if not resume:
                return out
            reader.start_next_cycle()
            continue
        assert not isinstance(ev, events.Pause)
        out.append(summarize(ev))


def coalesce(summaries: list[Summary], repeated_pauses: bool = False) -> list[Summary]:
    """Merge adjacent Data summaries (how a body is cut into Data events depends on how the
    bytes arrived); with `repeated_pauses`, adjacent PAUSEs too: a reader that is not resumed
    says PAUSED again on every drain."""
    out: list[Summary] = []
    for ev in summaries:
        if ev[0] == "data" and out and out[-1][0] == "data":
            prev = out[-1][1]
            assert isinstance(prev, bytes) and isinstance(ev[1], bytes)
            out[-1] = data(prev + ev[1])
        elif not (repeated_pauses and ev == PAUSE and out and out[-1] == PAUSE):
            out.append(ev)
    return out


def feed(
    reader: Reader, pieces: Iterable[bytes], eof: bool = False, resume: bool = True
) -> list[Summary]:
    """Feed `pieces` one receive_data() each (then EOF if asked), draining after each; the
    merged events."""
    out: list[Summary] = []
    for piece in pieces:
        reader.receive_data(piece)
        out += drain(reader, resume)
    if eof:
        reader.receive_eof()
        out += drain(reader, resume)
    return coalesce(out, repeated_pauses=not resume)


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]
