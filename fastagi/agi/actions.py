"""FastAGI sessions as actions: one AGI session runs one action and sets its result variables.

The action comes from the environment (`request.py`), runs through the `Dispatcher`, and
all result variables are set in one batch at the end (pipelined with a half-close, the
only pipelining Asterisk handles).
"""

from __future__ import annotations

import asyncio
import time

from ..actions.dispatch import (
    CUT_OFF,
    PEER_LEFT,
    CallerGone,
    Dispatcher,
    Outcome,
    result_pairs,
)
from ..actions.registry import ACTIONS, variable
from ..model.errors import SkypeError
from .protocol import get_variable, set_variable
from .request import action_name, parse_arguments
from .session import AgiSession, SessionClosed


class AgiActions:
    """The FastAGI server's session handler."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._prefix = dispatcher.prefix

    async def __call__(self, session: AgiSession) -> None:
        started = time.monotonic()
        env = session.environment
        name = action_name(env)
        raw: dict[str, str] | None = None  # None: not read (an unknown action, or arguments that cannot be read)
        outcome: Outcome | None = None  # None: the session ended before the action had run
        finished = self._dispatcher.finished
        try:
            try:
                if name in ACTIONS:  # an unknown name is reported as such, whatever its arguments
                    raw = parse_arguments(env)
                outcome = await self._dispatcher.execute(
                    name, raw or {}, lambda: self._channel_account(session), env.get("agi_channel"))
            except SkypeError as exc:  # arguments that cannot be read
                outcome = Outcome(ACTIONS[name], error=exc)
            await session.finish(await self._result_commands(session, outcome))
        except (SessionClosed, CallerGone):
            finished(session.caller, "agi", name, raw, outcome, started, PEER_LEFT)
            raise SessionClosed("peer closed the AGI connection") from None
        except asyncio.CancelledError:
            finished(session.caller, "agi", name, raw, outcome, started, CUT_OFF)
            raise
        finished(session.caller, "agi", name, raw, outcome, started)

    async def _channel_account(self, session: AgiSession) -> str | None:
        try:
            reply = await session.command(get_variable(variable(self._prefix, "account")))
        except SessionClosed:
            raise CallerGone() from None
        return reply.data if reply.ok and reply.result == "1" and reply.data else None

    async def _result_commands(self, session: AgiSession, outcome: Outcome) -> list[str]:
        stale = 0
        action = outcome.action
        if action is not None and action.returns_list is not None:  # how long the channel's earlier list was
            reply = await session.command(get_variable(variable(self._prefix, f"{action.returns_list.name}_count")))
            stale = int(reply.data) if reply.ok and reply.data and reply.data.isdigit() else 0
        return [set_variable(variable(self._prefix, name), value) for name, value in result_pairs(outcome, stale)]
