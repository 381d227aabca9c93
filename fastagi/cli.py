"""The `skype-fastagi` command: `serve` and `check-config`, and the admin commands that talk
to a running server over its control socket: `show`, `call` and `action`.

Admin commands print aligned tables for people (in the manner of Asterisk's `core show
channels`) and JSON with `--json` for scripts. They exit 0 on success, 1 when the server
cannot be reached or an action fails, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Coroutine

from . import __version__, logs
from .actions import ACTIONS
from .actions.registry import Action
from .config import Config, ConfigError, default_config, load_config
from .control.client import ControlClient, ControlError
from .control.protocol import SHOWABLE, Message, RemoteCall, RunAction, Show, Table, table_of

log = logging.getLogger("fastagi")

PROG = "skype-fastagi"
CALL_PREFIX = "call-"  # `call-start` is `skype-fastagi call start`
MAX_CELL = 48  # table cells past this are cut (the last column never is)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Skype ⇄ Asterisk gateway (FastAGI, AMI, AudioSocket)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", metavar="FILE", help="configuration file (default: embedded defaults)")
    serve.set_defaults(run=lambda args: serve_command(args.config))
    check = commands.add_parser("check-config", help="report every problem of a configuration file")
    check.add_argument("file")
    check.set_defaults(run=lambda args: check_config(args.file))

    client = _client_options()
    show = commands.add_parser("show", parents=[client], help="show accounts, live calls, chats or recent events")
    show.add_argument("what", choices=SHOWABLE)
    show.add_argument("--follow", action="store_true", help="events: go on printing new events until interrupted")

    def run_show(args: argparse.Namespace) -> int:
        if args.follow and args.what != "events":
            show.error("--follow is only for `show events`")
        return _client_command(args, show_command)

    show.set_defaults(run=run_show)

    call = commands.add_parser("call", help="run a call action (call-start is `call start`, …)")
    call_actions = call.add_subparsers(dest="call_action", required=True, metavar="ACTION")
    for name, action in ACTIONS.items():
        if name.startswith(CALL_PREFIX):
            _add_action_parser(call_actions, name.removeprefix(CALL_PREFIX), action, client)

    generic = commands.add_parser(
        "action", parents=[client], help="run any action with name=value arguments",
        epilog="actions: " + ", ".join(sorted(ACTIONS)),
    )
    generic.add_argument("name", metavar="NAME", help="the action, as in agi://HOST/NAME")
    generic.add_argument("arguments", nargs="*", metavar="name=value", type=_name_value,
                         help="its arguments, as in the AGI URL but not percent-encoded")

    def run_generic(args: argparse.Namespace) -> int:
        names = [name for name, _ in args.arguments]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            generic.error(f"argument {twice[0]!r} given twice")
        return _client_command(args, generic_command)

    generic.set_defaults(run=run_generic)

    network = commands.add_parser("network", help="the embedded Skype network")
    network_commands = network.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    remote = network_commands.add_parser(
        "call", parents=[client], help="a scripted user calls an account (try the incoming-call dialplan)")
    remote.add_argument("user", help="a `type = user` of the configuration, e.g. echo123")
    remote.add_argument("account", help="the account called")
    remote.set_defaults(run=lambda args: _client_command(args, network_call_command))
    return parser


def _client_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--json", action="store_true", help="print JSON for scripts")
    options.add_argument("--socket", metavar="PATH", help="control socket (default: the config's control_socket)")
    options.add_argument("--config", metavar="FILE", help="read control_socket from this configuration file")
    return options


def _add_action_parser(parent: Any, command: str, action: Action, client: argparse.ArgumentParser) -> None:
    sub = parent.add_parser(command, parents=[client], help=action.doc, description=action.doc)
    if action.uses_account:
        sub.add_argument("--account", metavar="NAME", help="the Skype account (needed when several are registered)")
    for argument in action.arguments:
        sub.add_argument(f"--{argument.name}", dest=argument.name, metavar="VALUE", required=argument.required, help=argument.doc)
    sub.set_defaults(run=lambda args: _client_command(args, call_command), action_name=action.name)


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not name=value")
    return name, value


# -- serve, check-config --------------------------------------------------------------
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
    logs.configure(config.general.log_level, sys.stderr)
    try:
        event_loop(config.general.event_loop)(_serve(config))
    except ImportError as exc:
        log.error("event_loop = %s, but it cannot be loaded (%s): pip install 'skype-fastagi[uvloop]'", config.general.event_loop, exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


# The objects of sessions in flight are young and die within milliseconds. With Python's
# first generation collected every 700 allocations, each collection scanned them all again
# (15 us of a session's CPU at 1000 sessions in flight, 4 us at 200); at 20,000 they die first.
GC_THRESHOLDS = (20_000, 10, 10)


def tune_collector() -> None:
    """Once the gateway has started: its objects so far live for good, and young ones are collected less often."""
    gc.freeze()  # start-up objects live for good: keep them out of full collections, whose pauses make media ticks late
    gc.set_threshold(*GC_THRESHOLDS)


def event_loop(name: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """The runner of `[general] event_loop`: asyncio's own loop, or uvloop's when asked (an optional extra)."""
    if name == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


async def _serve(config: Config) -> None:
    from .app import Gateway  # imported here so check-config stays light

    gateway = Gateway(config)
    await gateway.start()
    tune_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await gateway.stop()


# -- admin commands ---------------------------------------------------------------------
ClientCommand = Callable[[ControlClient, argparse.Namespace], int]


def _client_command(args: argparse.Namespace, command: ClientCommand) -> int:
    """Connect to the control socket and run `command(client, args)`; one line on stderr if that fails."""
    try:
        path = _socket_path(args)
        with ControlClient(path) as client:
            return command(client, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
    except ControlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    config = load_config(args.config) if args.config else default_config()
    return Path(config.general.control_socket)


def show_command(client: ControlClient, args: argparse.Namespace) -> int:
    reply = client.request(Show(args.what, args.follow))
    if not reply["ok"]:
        return _refused(reply)
    table = table_of(reply)
    if args.follow:
        return _follow(client, table, args.json)
    if args.json:
        print(json.dumps(table.records(), indent=2, ensure_ascii=False))
    else:
        print(render_table(table, args.what))
    return 0


def _follow(client: ControlClient, history: Table, as_json: bool) -> int:
    """Print the recent events, then each new one, until interrupted or the server goes."""
    show = _json_line if as_json else event_line
    try:
        for record in history.records():
            print(show(record), flush=True)
        for message in client.stream():
            if "event" not in message:
                return _refused(message)
            print(show(message["event"]), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    print(f"{PROG}: the server closed the connection", file=sys.stderr)
    return 1


def generic_command(client: ControlClient, args: argparse.Namespace) -> int:
    return _run_action(client, args, args.name, dict(args.arguments))


def call_command(client: ControlClient, args: argparse.Namespace) -> int:
    action = ACTIONS[args.action_name]
    raw = {name: value for name in action.accepted_names() if (value := getattr(args, name, None)) is not None}
    return _run_action(client, args, action.name, raw)


def network_call_command(client: ControlClient, args: argparse.Namespace) -> int:
    return _print_result(client.request(RemoteCall(args.user, args.account)), args, "network call")


def _run_action(client: ControlClient, args: argparse.Namespace, name: str, raw: dict[str, str]) -> int:
    return _print_result(client.request(RunAction(name, raw)), args, name)


def _print_result(reply: Message, args: argparse.Namespace, name: str) -> int:
    if not reply["ok"]:
        return _refused(reply)
    if args.json:
        print(json.dumps({k: reply[k] for k in ("result", "text", "variables")}, indent=2, ensure_ascii=False))
    else:
        for variable, value in reply["variables"].items():
            print(f"{variable}={_printable(value)}")
    if reply["result"] == "SUCCESS":
        return 0
    print(f"{PROG}: {name} failed: {reply['result']}: {_printable(reply['text'])}", file=sys.stderr)
    return 1


def _refused(reply: Message) -> int:
    print(f"{PROG}: {_printable(reply.get('error', 'the server refused the request'))}", file=sys.stderr)
    return 1


# -- output -----------------------------------------------------------------------------
def render_table(table: Table, what: str) -> str:
    """Aligned columns under a header, then a count: `2 accounts`."""
    header = [column.replace("_", " ").capitalize() for column in table.columns]
    last = len(table.columns) - 1
    rows = [[_cell(value, cut=i != last) for i, value in enumerate(row)] for row in table.rows]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    numeric = [bool(table.rows) and all(isinstance(row[i], int) for row in table.rows) for i in range(len(header))]
    lines = [
        "  ".join(text.rjust(width) if right else text.ljust(width) for text, width, right in zip(line, widths, numeric)).rstrip()
        for line in [header, *rows]
    ]
    noun = what[:-1] if len(table.rows) == 1 else what
    return "\n".join([*lines, f"{len(table.rows)} {noun}"])


def event_line(record: dict[str, Any]) -> str:
    return f"{record['time']}  {record['kind']:<13}  {_printable(record['account']):<12}  {_cell(record['fields'], cut=False)}"


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


def _cell(value: Any, cut: bool) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict):
        text = " ".join(f"{k}={v}" for k, v in value.items() if v not in ("", None))
    else:
        text = str(value)
    text = _printable(text)
    return text[: MAX_CELL - 1] + "…" if cut and len(text) > MAX_CELL else text


def _printable(text: str) -> str:
    """Skype-side text may hold control characters (terminal escapes): they print as spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


if __name__ == "__main__":
    sys.exit(main())
