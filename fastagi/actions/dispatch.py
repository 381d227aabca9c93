"""One AGI session = one action: route, validate, resolve the account, run, reply.

All result variables are set in one batch at the end (pipelined with a half-close, the
only pipelining Asterisk handles), and each session is logged in one line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..agi.protocol import get_variable, set_variable
from ..agi.session import AgiSession
from ..errors import SkypeError
from ..manager.accounts import AccountManager
from .context import ActionContext, MediaSettings
from .registry import ACTIONS, Action, Row, variable
from .request import action_name, parse_arguments

log = logging.getLogger("fastagi.session")

LOGGED_VALUE = 40  # message bodies and other long values are cut to this in the log


@dataclass
class Outcome:
    action: Action | None
    values: dict[str, str] = field(default_factory=dict)
    rows: list[Row] | None = None
    error: SkypeError | None = None


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
        self.counts: dict[tuple[str, str], int] = {}

    async def __call__(self, session: AgiSession) -> None:
        started = time.monotonic()
        env = session.environment
        name = action_name(env)
        raw: dict[str, str] = {}
        outcome = Outcome(ACTIONS.get(name))
        try:
            if outcome.action is None:
                raise SkypeError(errors.UNKNOWN_ACTION, f"no action named {name!r}" if name else "the AGI URL names no action")
            raw = parse_arguments(env)
            await self._run(session, outcome.action, raw, outcome)
        except SkypeError as exc:
            outcome.error = exc
        except Exception as exc:  # noqa: BLE001 - the channel must always get an answer
            log.exception("action %s failed", name)
            outcome.error = SkypeError(errors.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        commands = await self._result_commands(session, outcome)
        try:
            await session.finish(commands)
        finally:
            self._log(session, name, raw, outcome, started)

    async def _run(self, session: AgiSession, action: Action, raw: dict[str, str], outcome: Outcome) -> None:
        values = action.validate(raw)
        account = ""
        if action.uses_account:
            account = await self._account(session, raw.get("account"))
        context = ActionContext(self.manager, account, self.media, self.services)
        result = await action.handler(context, **values)
        if isinstance(result, list):
            outcome.rows = result
        elif result:
            outcome.values = {k: str(v) for k, v in result.items()}

    async def _account(self, session: AgiSession, given: str | None) -> str:
        """The `account` argument, else the SKYPE_ACCOUNT channel variable, else the only account."""
        if given is not None:
            if not given:
                raise SkypeError(errors.INVALID_ARGUMENT, "account: must not be empty")
            self.manager.account(given)
            return given
        reply = await session.command(get_variable(variable(self.prefix, "account")))
        if reply.ok and reply.result == "1" and reply.data:
            self.manager.account(reply.data)
            return reply.data
        names = self.manager.names()
        if len(names) == 1:
            return names[0]
        raise SkypeError(errors.INVALID_ARGUMENT, f"no account given and {len(names)} are registered: add account=NAME or set {variable(self.prefix, 'account')}")

    async def _result_commands(self, session: AgiSession, outcome: Outcome) -> list[str]:
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
                pairs += await self._list_pairs(session, action, outcome.rows if not error else None)
        return [set_variable(variable(self.prefix, name), value) for name, value in pairs]

    async def _list_pairs(self, session: AgiSession, action: Action, rows: list[Row] | None) -> list[tuple[str, str]]:
        """The list's variables, plus empty ones for every item an earlier, longer list left."""
        spec = action.returns_list
        assert spec is not None
        reply = await session.command(get_variable(variable(self.prefix, f"{spec.name}_count")))
        stale = int(reply.data) if reply.ok and reply.data and reply.data.isdigit() else 0
        count = "" if rows is None else str(len(rows))
        rows = rows or []
        pairs: list[tuple[str, str]] = [(f"{spec.name}_count", count)]
        for index in range(1, max(len(rows), stale) + 1):
            row = rows[index - 1] if index <= len(rows) else Row("")
            pairs.append((f"{spec.name}_{index}", row.value))
            pairs += [(f"{spec.name}_{index}_{extra}", row.extras.get(extra, "")) for extra in spec.extras]
        return pairs

    def _log(self, session: AgiSession, name: str, raw: dict[str, str], outcome: Outcome, started: float) -> None:
        env = session.environment
        status = f"FAILED {outcome.error.code}" if outcome.error else "SUCCESS"
        key = (name if outcome.action else "(unknown)", status.split()[0])
        self.counts[key] = self.counts.get(key, 0) + 1
        shown = " ".join(f"{k}={_shorten(v)}" for k, v in raw.items())
        log.info(
            "uniqueid=%s channel=%s action=%s %s -> %s%s (%.1f ms)",
            env.get("agi_uniqueid", "-"), env.get("agi_channel", "-"), name or "-", shown or "(no arguments)",
            status, f" ({outcome.error.text})" if outcome.error else "", (time.monotonic() - started) * 1000,
        )


def _shorten(value: str) -> str:
    value = value.replace("\n", " ").replace("\r", " ")
    return repr(value if len(value) <= LOGGED_VALUE else value[:LOGGED_VALUE] + "…")
