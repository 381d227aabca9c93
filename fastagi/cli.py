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
import os
import re
import signal
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Coroutine

from . import __version__, logs
from .actions import ACTIONS
from .actions.registry import Action
from .config import DEFAULT_PATH, ENVIRONMENT, Config, ConfigError, Problem, config_path, load_config, read_config
from .control.client import ControlClient, ControlError
from .control.protocol import MAX_FILE, SHOWABLE, Message, RemoteCall, RemoteSend, RunAction, Show, Table, table_of
from .manager.store import DatabaseInUse, database_problem

log = logging.getLogger("fastagi")

PROG = "skype-fastagi"
CALL_PREFIX = "call-"  # `call-start` is `skype-fastagi call start`
MAX_CELL = 48  # table cells past this are cut (the last column never is)
HISTORY_LIMIT = 100  # calls `show history` prints unless --limit says otherwise
AGO = {"s": 1, "m": 60, "h": 3600, "d": 86400}
NOUNS = {"history": ("ended call", "ended calls")}  # what the count under a table counts, when not `what` itself
MONEY = re.compile(r"^-?\d+\.\d\d$")
CONFIG_HELP = f"configuration file (default: ${ENVIRONMENT}, else {DEFAULT_PATH} if it exists, else the embedded defaults)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `show events --json | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail again
        return 0


class _Formatter(argparse.HelpFormatter):
    """argparse's help, wrapped between words only: never inside `call-transfer` or `/etc/skype-fastagi`."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """Every parser and subparser formats its help with `_Formatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Skype ⇄ Asterisk gateway (FastAGI, AMI, AudioSocket)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    serve.set_defaults(run=lambda args: serve_command(args.config))
    check = commands.add_parser("check-config", help="report every problem of a configuration file")
    check.add_argument("file", nargs="?", metavar="FILE", help="the file to check (the same as --config FILE)")
    check.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    check.add_argument("--json", action="store_true", help="print the result as JSON for scripts")

    def run_check(args: argparse.Namespace) -> int:
        if args.file and args.config and args.file != args.config:
            check.error("give the file once: FILE or --config FILE")
        path = config_path(args.file or args.config)
        if path is None:
            check.error(f"no file to check: give FILE, set {ENVIRONMENT} or create {DEFAULT_PATH}")
        return check_config(path, args.json)

    check.set_defaults(run=run_check)

    client = _client_options()
    show = commands.add_parser("show", parents=[client], help="show accounts, live calls, chats, recent events or the call history")
    show.add_argument("what", choices=SHOWABLE)
    show.add_argument("--follow", action="store_true", help="events: go on printing new events until interrupted")
    history = show.add_argument_group("history", "filters of `show history` (the calls that ended)")
    history.add_argument("--account", metavar="NAME", help="calls of this account only")
    history.add_argument("--since", metavar="TIME", type=_when,
                         help="calls started at or after TIME: 2026-12-03, 2026-12-03T14:00 (local time unless an "
                              "offset is given), or a time ago: 90s, 30m, 2h, 7d")
    history.add_argument("--until", metavar="TIME", type=_when, help="calls started before TIME (as --since)")
    history.add_argument("--limit", metavar="N", type=_positive, default=HISTORY_LIMIT,
                         help=f"the newest N calls (default {HISTORY_LIMIT})")

    def run_show(args: argparse.Namespace) -> int:
        if args.follow and args.what != "events":
            show.error("--follow is only for `show events`")
        given = [f"--{name}" for name in ("account", "since", "until") if getattr(args, name) is not None]
        if given and args.what != "history":
            show.error(f"{', '.join(given)}: only for `show history`")
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

    network = commands.add_parser("network", help="the embedded Skype network: its scripted users call, write, "
                                                     "ask and send files to an account")
    network_commands = network.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    scripted = _scripted_options()
    remote = network_commands.add_parser(
        "call", parents=[client, scripted], help="a scripted user calls an account (try the incoming-call dialplan)")
    remote.set_defaults(run=lambda args: _client_command(args, network_call_command))
    chat = network_commands.add_parser("chat", parents=[client, scripted],
                                       help="a scripted user sends an account a chat message (SkypeChatMessage)")
    chat.add_argument("text", metavar="TEXT", help="the message")
    chat.set_defaults(run=lambda args: _client_command(args, network_send_command), kind="chat")
    buddy = network_commands.add_parser("buddy", parents=[client, scripted],
                                        help="a scripted user asks an account to be a buddy (SkypeAuthRequest, or "
                                             "the account's auth_policy answers)")
    buddy.add_argument("--text", default="Please add me to your contacts", help="the request's text")
    buddy.set_defaults(run=lambda args: _client_command(args, network_send_command), kind="buddy")
    sent = network_commands.add_parser("file", parents=[client, scripted],
                                       help="a scripted user sends an account a file (SkypeFileTransfer, stored in "
                                            "incoming_dir)")
    sent.add_argument("file", metavar="FILE", type=Path,
                      help=f"a file on this machine, {MAX_FILE // 1024} KiB at most; the account receives a copy")
    sent.add_argument("--name", help="the file name the account sees (default: FILE's own)")

    def run_file(args: argparse.Namespace) -> int:
        try:
            size = args.file.stat().st_size
        except OSError as exc:
            sent.error(f"{args.file}: {exc.strerror}")
        if size > MAX_FILE:
            sent.error(f"{args.file}: {size} bytes; a file sent this way is {MAX_FILE // 1024} KiB at most")
        return _client_command(args, network_send_command)

    sent.set_defaults(run=run_file, kind="file")
    return parser


def _scripted_options() -> argparse.ArgumentParser:
    options = _Parser(add_help=False)
    options.add_argument("user", metavar="USER", help="a scripted user: a `type = user` of the configuration, e.g. echo123")
    options.add_argument("account", metavar="ACCOUNT", help="an account of this gateway on the embedded network")
    return options


def _client_options() -> argparse.ArgumentParser:
    options = _Parser(add_help=False)
    options.add_argument("--json", action="store_true", help="print JSON for scripts")
    options.add_argument("--socket", metavar="PATH", help="control socket (default: the config's control_socket)")
    options.add_argument("--config", metavar="FILE", help=f"where control_socket is read from: {CONFIG_HELP}")
    return options


def _add_action_parser(parent: Any, command: str, action: Action, client: argparse.ArgumentParser) -> None:
    sub = parent.add_parser(command, parents=[client], help=action.doc, description=action.doc)
    if action.uses_account:
        sub.add_argument("--account", metavar="NAME", help="the Skype account (needed when several are registered)")
    for argument in action.arguments:
        sub.add_argument(f"--{argument.name}", dest=argument.name, metavar="VALUE", required=argument.required, help=argument.doc)
    sub.set_defaults(run=lambda args: _client_command(args, call_command), action_name=action.name)


def _when(text: str) -> float:
    """Epoch seconds of `2026-12-03`, `2026-12-03T14:00[+01:00]` (local time without an offset) or `2h` (ago)."""
    amount, unit = text[:-1], text[-1:]
    if unit in AGO and amount.isdigit():
        return time.time() - int(amount) * AGO[unit]
    try:
        return datetime.fromisoformat(text).astimezone().timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is no date, date and time, or time ago (90s, 30m, 2h, 7d)") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number, 1 or more")
    return int(text)


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not name=value")
    return name, value


# -- serve, check-config --------------------------------------------------------------
CONFIG_PROBLEM = 2  # exit status of `serve` and `check-config` for a file that cannot be used


def check_config(path: Path, as_json: bool = False) -> int:
    try:
        config = usable(load_config(path))
    except ConfigError as exc:
        problems = exc.problems
    else:
        problems = []
    if as_json:
        print(json.dumps({
            "file": str(path), "ok": not problems,
            "problems": [{"line": p.line or None, "reason": p.reason} for p in problems],
            **({} if problems else {"accounts": list(config.accounts), "users": list(config.users)}),
        }, indent=2, ensure_ascii=False))
    elif problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    else:
        print(f"{path}: OK ({len(config.accounts)} account(s), {len(config.users)} network user(s))")
    return CONFIG_PROBLEM if problems else 0


def usable(config: Config) -> Config:
    """`config`, once checked against what it names on this machine (the database); ConfigError if unusable."""
    general = config.general
    reason = database_problem(Path(general.database))
    if reason is not None:
        raise ConfigError([Problem(config.source, general.lines.get("database", 0), f"database: {reason}")])
    return config


def _print_problems(error: ConfigError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def serve_command(path: str | None) -> int:
    try:
        config = usable(read_config(path))
    except ConfigError as exc:
        _print_problems(exc)
        return CONFIG_PROBLEM
    logs.configure(config.general.log_level, sys.stderr)
    log.info("%s %s, configuration: %s", PROG, __version__, config.source)
    embedded = [name for name, section in config.accounts.items() if section.network == "embedded"]
    if embedded:
        log.info("%s on the embedded network: a simulation inside this gateway, for development, tests, "
                 "demonstrations and training a dialplan; no call or message reaches a real person",
                 ", ".join(embedded))
    try:
        event_loop(config.general.event_loop)(_serve(config, first_steps(config, path)))
    except ImportError as exc:
        log.error("event_loop = %s, but it cannot be loaded (%s): pip install 'skype-fastagi[uvloop]'", config.general.event_loop, exc)
        return 1
    except (OSError, DatabaseInUse) as exc:
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


def first_steps(config: Config, given: str | None) -> str | None:
    """What to try once the gateway runs on the embedded network, as commands to copy."""
    account = next((name for name, section in config.accounts.items() if section.network == "embedded"), None)
    if account is None:
        return None
    user = "echo123" if "echo123" in config.users else next(iter(config.users), account)
    option = f" --config {given}" if given else ""
    return (f"try: {PROG} call start{option} --account {account} --user-name {user} (a call to the echo test); "
            f"{PROG} show calls{option}; {PROG} network call{option} {user} {account} (an incoming call)")


async def _serve(config: Config, first: str | None = None) -> None:
    from .app import Gateway  # imported here so check-config stays light

    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the ports open: a signal once they answer is a clean stop
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    if first is not None:
        log.info("%s", first)
    tune_collector()
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
        _print_problems(exc)
    except ControlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    return Path(read_config(args.config).general.control_socket)


def show_command(client: ControlClient, args: argparse.Namespace) -> int:
    filters = {"account": args.account, "since": args.since, "until": args.until, "limit": args.limit} \
        if args.what == "history" else {}
    reply = client.request(Show(args.what, args.follow, **filters))
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
    except KeyboardInterrupt:
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


def network_send_command(client: ControlClient, args: argparse.Namespace) -> int:
    if args.kind == "file":
        request = RemoteSend("file", args.user, args.account, file_name=args.name or args.file.name,
                             data=args.file.read_bytes())
    else:
        request = RemoteSend(args.kind, args.user, args.account, text=args.text)
    return _print_result(client.request(request), args, f"network {args.kind}")


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
    header = [_header(column) for column in table.columns]
    last = len(table.columns) - 1
    rows = [[_cell(value, cut=i != last) for i, value in enumerate(row)] for row in table.rows]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    numeric = [bool(table.rows) and all(_numeric(row[i]) for row in table.rows) for i in range(len(header))]
    lines = [
        "  ".join(text.rjust(width) if right else text.ljust(width) for text, width, right in zip(line, widths, numeric)).rstrip()
        for line in [header, *rows]
    ]
    one, many = NOUNS.get(what, (what[:-1], what))
    return "\n".join([*lines, f"{len(table.rows)} {one if len(table.rows) == 1 else many}"])


def _header(column: str) -> str:
    """`partner_name` is `Partner name`; `duration_seconds` is `Duration (s)`."""
    name, unit = (column.removesuffix("_seconds"), " (s)") if column.endswith("_seconds") else (column, "")
    return name.replace("_", " ").capitalize() + unit


def _numeric(value: Any) -> bool:
    """Right-aligned: numbers, and amounts of money (`10.50`)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or \
        (isinstance(value, str) and MONEY.match(value) is not None)


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
