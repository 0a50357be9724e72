# The sans-I/O HTTP/1.1 core: bytes in, events out; heads in, bytes out.
# Nothing here touches sockets, clocks, DNS or metrics (enforced by ./ruff.toml and a test).
