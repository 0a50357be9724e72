# Types of the C accelerator in _speedups.c (see migproxy/http1/parse.py).
from collections.abc import Callable

from migproxy.http1.events import BodyKind, RequestHead, ResponseHead
from migproxy.http1.headers import Fields

def bind(
    *,
    request_head: type[RequestHead],
    response_head: type[ResponseHead],
    fields: type[Fields],
    body_none: BodyKind,
    body_length: BodyKind,
    body_chunked: BodyKind,
    body_until_close: BodyKind,
    no_tokens: list[bytes],
    keep_alive_tokens: list[bytes],
    close_tokens: list[bytes],
    upgrade_tokens: list[bytes],
    request_fallback: Callable[[bytes, int, int, int], RequestHead],
    response_fallback: Callable[[bytes, int, int, int, bytes], ResponseHead],
) -> None: ...
def parse_request_head(buf: bytes, start: int, end: int, max_fields: int) -> RequestHead: ...
def parse_response_head(
    buf: bytes, start: int, end: int, max_fields: int, request_method: bytes
) -> ResponseHead: ...
