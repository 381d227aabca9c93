"""One AGI session = one action: route, validate, resolve the account, run, reply.

`Dispatcher.execute` runs an action from its name and raw `name=value` arguments and
never raises; the AGI session (`__call__`) and the admin control socket (`run`) both
go through it, so an action behaves and fails the same way whoever asks. All result
variables are set in one batch at the end (pipelined with a half-close, the only
pipelining Asterisk handles), and each run is logged in one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .. import errors
from ..agi.protocol import get_variable, set_variable
from ..agi.session import AgiSession, SessionClosed
from ..errors import SkypeError
from ..manager.accounts import AccountManager
from .context import ActionContext, MediaSettings
from .registry import ACTIONS, Action, ListResult, Row, variable
from .request import action_name, parse_arguments

log = logging.getLogger("fastagi.session")

LOGGED_VALUE = 40  # message bodies and other long values are cut to this in the log
UNKNOWN = "(unknown)"  # the action label of a name that is no action: never the raw name


@dataclass(frozen=True)
class Lost:
    """Why a session's results were not delivered: its result in the metrics, and how the log says it."""

    result: str
    unfinished: str  # the log's status when the action had not finished
    why: str


PEER_LEFT = Lost("DISCONNECTED", "not run", "the peer closed the connection")
CUT_OFF = Lost("CUT_OFF", "not finished", "cut off by session_timeout or by the server stopping")

ChannelAccount = Callable[[], Awaitable[str | None]]


@dataclass
class Outcome:
    action: Action | None
    values: dict[str, str] = field(default_factory=dict)
    rows: list[Row] | None = None
    error: SkypeError | None = None

    @property
    def result(self) -> str:
        """`SUCCESS`, or the error code."""
        return self.error.code if self.error else "SUCCESS"


@dataclass(frozen=True)
class Finished:
    """One action run, as observers (metrics) see it."""

    action: str  # the action's name, or UNKNOWN
    result: str  # SUCCESS, the error code, DISCONNECTED or CUT_OFF
    seconds: float  # for an AGI session: from its environment to its last reply
    via: str  # "agi" or "control"


Observer = Callable[[Finished], None]


class Dispatcher:
    def __init__(
        self,
        manager: AccountManager,
        prefix: str = "SKYPE_",
        media: MediaSettings | None = None,
        services: dict[str, Any] | None = None,
    ) -> None:
        self.manager = manager
        self.prefix = prefix
        self.media = media or MediaSettings()
        self.services = services if services is not None else {}
        self.observers: list[Observer] = []

    async def __call__(self, session: AgiSession) -> None:
        started = time.monotonic()
        env = session.environment
        name = action_name(env)
        raw: dict[str, str] = {}
        outcome: Outcome | None = None  # None: the session ended before the action had run
        try:
            try:
                if name in ACTIONS:  # an unknown name is reported as such, whatever its arguments
                    raw = parse_arguments(env)
                outcome = await self.execute(name, raw, lambda: self._channel_account(session), env.get("agi_channel"))
            except SkypeError as exc:  # arguments that cannot be read
                outcome = Outcome(ACTIONS[name], error=exc)
            await session.finish(await self._result_commands(session, outcome))
        except SessionClosed:
            self._finished(session.caller, "agi", name, raw, outcome, started, PEER_LEFT)
            raise
        except asyncio.CancelledError:
            self._finished(session.caller, "agi", name, raw, outcome, started, CUT_OFF)
            raise
        self._finished(session.caller, "agi", name, raw, outcome, started)

    async def run(self, name: str, raw: dict[str, str]) -> Outcome:
        """Run an action for the admin control socket: no channel, so no SKYPE_ACCOUNT fallback."""
        started = time.monotonic()
        outcome = await self.execute(name, raw)
        self._finished("control", "control", name, raw, outcome, started)
        return outcome

    async def execute(
        self, name: str, raw: dict[str, str], channel_account: ChannelAccount | None = None, channel: str = ""
    ) -> Outcome:
        """Run action `name` with its raw arguments; every failure ends up in the outcome.

        `channel_account` reads the account variable of the calling channel, where there is
        one; `channel` is that channel's name.
        """
        outcome = Outcome(ACTIONS.get(name))
        try:
            if outcome.action is None:
                raise SkypeError(errors.UNKNOWN_ACTION, f"no action named {name!r}" if name else "the AGI URL names no action")
            await self._run(outcome.action, raw, outcome, channel_account, channel)
        except SkypeError as exc:
            outcome.error = exc
        except SessionClosed:
            raise  # the caller is gone: nobody to answer
        except Exception as exc:  # noqa: BLE001 - the caller must always get an answer
            log.exception("action %s failed", _plain(name))
            outcome.error = SkypeError(errors.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        return outcome

    def variables(self, outcome: Outcome) -> dict[str, str]:
        """The channel variables `outcome` sets, by their full names (`SKYPE_CALL_ID`)."""
        return {variable(self.prefix, name): value for name, value in result_pairs(outcome)}

    async def _run(
        self, action: Action, raw: dict[str, str], outcome: Outcome, channel_account: ChannelAccount | None, channel: str
    ) -> None:
        values = action.validate(raw)
        account = ""
        if action.uses_account:
            account = await self._account(raw.get("account"), channel_account)
        context = ActionContext(self.manager, account, self.media, self.services, channel)
        result = await action.handler(context, **values)
        if isinstance(result, list):
            outcome.rows = result
        elif result:
            outcome.values = {k: str(v) for k, v in result.items()}

    async def _account(self, given: str | None, channel_account: ChannelAccount | None) -> str:
        """The `account` argument, else the SKYPE_ACCOUNT channel variable, else the only account."""
        if given is not None:
            if not given:
                raise SkypeError(errors.INVALID_ARGUMENT, "account: must not be empty")
            self.manager.account(given)
            return given
        from_channel = await channel_account() if channel_account is not None else None
        if from_channel:
            self.manager.account(from_channel)
            return from_channel
        names = self.manager.names()
        if len(names) == 1:
            return names[0]
        raise SkypeError(errors.INVALID_ARGUMENT, f"no account given and {len(names)} are registered: add account=NAME or set {variable(self.prefix, 'account')}")

    async def _channel_account(self, session: AgiSession) -> str | None:
        reply = await session.command(get_variable(variable(self.prefix, "account")))
        return reply.data if reply.ok and reply.result == "1" and reply.data else None

    async def _result_commands(self, session: AgiSession, outcome: Outcome) -> list[str]:
        stale = 0
        action = outcome.action
        if action is not None and action.returns_list is not None:  # how long the channel's earlier list was
            reply = await session.command(get_variable(variable(self.prefix, f"{action.returns_list.name}_count")))
            stale = int(reply.data) if reply.ok and reply.data and reply.data.isdigit() else 0
        return [set_variable(variable(self.prefix, name), value) for name, value in result_pairs(outcome, stale)]

    def _finished(
        self, who: str, via: str, name: str, raw: dict[str, str], outcome: Outcome | None, started: float,
        lost: Lost | None = None,
    ) -> None:
        """Log in one line, and tell the observers (metrics count there).

        A session whose results were not delivered counts as its `Lost` result
        (DISCONNECTED, CUT_OFF), whether or not its action had finished (the log line says which).
        """
        seconds = time.monotonic() - started
        if outcome is None:
            assert lost is not None  # only a session that ended early leaves no outcome
            status, result = f"{lost.unfinished}: {lost.why}", lost.result
        else:
            status = f"FAILED {outcome.error.code} ({outcome.error.text})" if outcome.error else "SUCCESS"
            result = outcome.result
            if lost is not None:
                status, result = f"{status}, not delivered: {lost.why}", lost.result
        label = name if name in ACTIONS else UNKNOWN
        shown = " ".join(f"{_plain(k)}={_shorten(v)}" for k, v in raw.items())
        log.info("%s action=%s %s -> %s (%.1f ms)", who, _plain(name) or "-", shown or "(no arguments)", status, seconds * 1000)
        finished = Finished(label, result, seconds, via)
        for observer in list(self.observers):
            try:
                observer(finished)
            except Exception:  # noqa: BLE001 - an observer's bug must not break sessions
                log.exception("action observer %r failed", observer)


def result_pairs(outcome: Outcome, stale: int = 0) -> list[tuple[str, str]]:
    """Every variable an outcome sets, by seed name, in the order they are set.

    `stale` is how many items an earlier list on the channel had: the ones past this
    list's end are set empty too. A failure sets its action's results empty.
    """
    error = outcome.error
    pairs = [
        ("status", "FAILED" if error else "SUCCESS"),
        ("error", error.code if error else ""),
        ("error-text", error.text if error else ""),
    ]
    action = outcome.action
    if action is not None:
        pairs += [(name, "" if error else outcome.values.get(name, "")) for name in action.returns]
        if action.returns_list is not None:
            pairs += _list_pairs(action.returns_list, None if error else outcome.rows, stale)
    return pairs


def _list_pairs(spec: ListResult, rows: list[Row] | None, stale: int) -> list[tuple[str, str]]:
    count = "" if rows is None else str(len(rows))
    rows = rows or []
    pairs: list[tuple[str, str]] = [(f"{spec.name}_count", count)]
    for index in range(1, max(len(rows), stale) + 1):
        row = rows[index - 1] if index <= len(rows) else Row("")
        pairs.append((f"{spec.name}_{index}", row.value))
        pairs += [(f"{spec.name}_{index}_{extra}", row.extras.get(extra, "")) for extra in spec.extras]
    return pairs


def _plain(text: str) -> str:
    """A name as logged: one line, cut (names from the control socket are any JSON string)."""
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= LOGGED_VALUE else text[:LOGGED_VALUE] + "…"


def _shorten(value: str) -> str:
    return repr(_plain(value))
