# Command line: `migproxy run|check --config FILE`, `migproxy watch URL...`,
# `migproxy demo-backend`, `migproxy lab`; `migproxy worker` is how the supervisor starts its
# workers.
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from migproxy import __version__
from migproxy.config import Config, ConfigError, load_config, read_config_file
from migproxy.fdlimit import raise_open_files_limit
from migproxy.loop import loop_factory


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="migproxy",
        description="HTTP/1.1 reverse proxy that moves keep-alive clients across a VIP migration",
    )
    parser.add_argument("--version", action="version", version=f"migproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the proxy")
    run.add_argument("--config", required=True, help="TOML configuration file")
    run.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    worker = sub.add_parser("worker", help=argparse.SUPPRESS)  # started by the supervisor
    worker.add_argument("--config", required=True)
    worker.add_argument("--run-dir", required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--no-uvloop", action="store_true")
    check = sub.add_parser("check", help="validate a configuration file (exit 0 or 1)")
    check.add_argument("--config", required=True, help="TOML configuration file")
    sub.add_parser("demo-backend", help="run the bundled demo backend", add_help=False)
    sub.add_parser("watch", help="live convergence view over proxies' /metrics", add_help=False)
    sub.add_parser("lab", help="a VIP migration on loopback, policy by policy", add_help=False)
    return parser


def _setup_logging(config: Config, process: str = "") -> None:
    """Log lines to stderr; a worker's name its process, the supervisor's do not."""
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: "
        + (f"{process}: " if process else "")
        + "%(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["demo-backend"]:
        from migproxy.demo_backend import main as backend_main

        backend_main(args_list[1:])
        return 0
    if args_list[:1] == ["watch"]:
        from migproxy.watch import main as watch_main

        return watch_main(args_list[1:])
    if args_list[:1] == ["lab"]:
        from migproxy.lab.cli import main as lab_main

        return lab_main(args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command in ("run", "worker"):
        # A reload signal during start-up must not kill the process (SIGHUP's default action):
        # ignore it until serve() or the supervisor installs its handler.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        if args.command == "worker":
            from migproxy.control import config_in_force

            config, content = config_in_force(args.config, Path(args.run_dir))
        else:
            # Read once: what runs is what was checked. No loop runs yet, so a pipe will do.
            content = read_config_file(args.config, regular_only=False)
            config = load_config(args.config, content)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if args.command == "check":
        print(f"{args.config}: ok")
        return 0
    _setup_logging(config, f"worker {args.index}" if args.command == "worker" else "")
    if args.command == "run":
        raise_open_files_limit()  # workers inherit it
    from migproxy.lifecycle import serve
    from migproxy.upstream.resolver import ResolveError

    try:
        if args.command == "run" and config.server.workers > 1:
            from migproxy.supervisor import Supervisor

            supervisor = Supervisor(config, args.config, args.no_uvloop, content)
            return asyncio.run(supervisor.run())
        worker = (args.index, Path(args.run_dir)) if args.command == "worker" else None
        with asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner:
            runner.run(
                serve(config, config_path=args.config, worker=worker, config_content=content)
            )
    except (OSError, ResolveError, RuntimeError) as err:
        logging.getLogger("migproxy").error("cannot start: %s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
