"""migproxy: an HTTP/1.1 reverse proxy that moves keep-alive clients across a VIP migration.

It announces ``Connection: close`` on a configurable share of responses, closes those
connections gracefully, and lets clients reconnect through a fresh DNS lookup.
"""

__version__ = "0.1.0"
