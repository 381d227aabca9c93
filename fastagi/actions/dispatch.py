"""Running an action: route, validate, resolve the account, check its network, run, report.

`Dispatcher.execute` runs an action from its name and raw `name=value` arguments and
never raises; the FastAGI adapter (`fastagi.agi.actions`) and the admin control socket
(`run`) both go through it, so an action behaves and fails the same way whoever asks.
Each run is logged in one line (`finished`) and counted by the observers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from ..manager.accounts import AccountManager
from ..media.callmedia import CallMedia
from ..model import errors
from ..model.errors import SkypeError
from .context import ActionContext, MediaSettings
from .registry import ACTIONS, Action, ListResult, Row, variable

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


class CallerGone(Exception):
    """The caller of an action went away (its connection closed) before it could be answered."""


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
        call_media: CallMedia,
        prefix: str = "SKYPE_",
        media: MediaSettings | None = None,
        observers: tuple[Observer, ...] = (),
    ) -> None:
        self.manager = manager
        self.call_media = call_media
        self.prefix = prefix
        self.media = media or MediaSettings()
        self._observers = observers

    async def run(self, name: str, raw: dict[str, str]) -> Outcome:
        """Run an action for the admin control socket: no channel, so no SKYPE_ACCOUNT fallback."""
        started = time.monotonic()
        outcome = await self.execute(name, raw)
        self.finished("control", "control", name, raw, outcome, started)
        return outcome

    async def execute(
        self, name: str, raw: dict[str, str], channel_account: ChannelAccount | None = None, channel: str = ""
    ) -> Outcome:
        """Run action `name` with its raw arguments; every failure ends up in the outcome.

        `channel_account` reads the account variable of the calling channel, where there is
        one; `channel` is that channel's name. `CallerGone` is raised: there is nobody to answer.
        """
        outcome = Outcome(ACTIONS.get(name))
        try:
            if outcome.action is None:
                raise SkypeError(errors.UNKNOWN_ACTION, f"no action named {name!r}" if name else "the AGI URL names no action")
            await self._run(outcome.action, raw, outcome, channel_account, channel)
        except SkypeError as exc:
            outcome.error = exc
        except CallerGone:
            raise
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
            if action.needs is not None:
                self.manager.require(account, action.needs)
        context = ActionContext(self.manager, self.call_media, self.media, account, channel)
        result = await action.handler(context, **values)
        if isinstance(result, list):
            outcome.rows = result
        elif result:
            outcome.values = {k: str(v) for k, v in result.items()}

    async def _account(self, given: str | None, channel_account: ChannelAccount | None) -> str:
        """The `account` argument, else the SKYPE_ACCOUNT channel variable, else the only account."""
        accounts = self.manager.accounts
        if given is not None:
            if not given:
                raise SkypeError(errors.INVALID_ARGUMENT, "account: must not be empty")
            return accounts.get(given).name
        from_channel = await channel_account() if channel_account is not None else None
        if from_channel:
            return accounts.get(from_channel).name
        names = accounts.names()
        if len(names) == 1:
            return names[0]
        raise SkypeError(errors.INVALID_ARGUMENT, f"no account given and {len(names)} are registered: add account=NAME or set {variable(self.prefix, 'account')}")

    def finished(
        self, who: str, via: str, name: str, raw: dict[str, str] | None, outcome: Outcome | None, started: float,
        lost: Lost | None = None,
    ) -> None:
        """Log in one line, and tell the observers (metrics count there). `raw` is None when the arguments were
        not read (an unknown action, or a query that is not valid).

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
        if raw is None:
            shown = "(arguments not read)"
        else:
            shown = " ".join(f"{_plain(k)}={_shorten(v)}" for k, v in raw.items()) or "(no arguments)"
        log.info("%s action=%s %s -> %s (%.1f ms)", who, _plain(name) or "-", shown, status, seconds * 1000)
        finished = Finished(label, result, seconds, via)
        for observer in self._observers:
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
