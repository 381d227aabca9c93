"""The `skype-fastagi` command: `serve` and `check-config`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from . import __version__
from .config import Config, ConfigError, default_config, load_config

log = logging.getLogger("fastagi")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skype-fastagi", description="Skype ⇄ Asterisk gateway (FastAGI, AMI, AudioSocket)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", metavar="FILE", help="configuration file (default: embedded defaults)")
    check = commands.add_parser("check-config", help="report every problem of a configuration file")
    check.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    return serve_command(args.config)


def check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{path}: OK ({len(config.accounts)} account(s), {len(config.users)} network user(s))")
    return 0


def serve_command(path: str | None) -> int:
    try:
        config = load_config(path) if path else default_config()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    logging.basicConfig(
        level=config.general.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


async def _serve(config: Config) -> None:
    from .app import Gateway  # imported here so check-config stays light

    gateway = Gateway(config)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
