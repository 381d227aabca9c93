"""What the gateway's events become on the AMI: the actions to send, as ordered headers (no I/O).

Every event becomes ``Action: UserEvent`` with ``UserEvent: Skype<Kind>``, ``Account:`` and
the event's fields in their order (`userevents`), every value escaped (`protocol`), and
``Seq:`` last (the listener's number of the event, the same on a resent copy). A
ringing incoming call is also routed into the dialplan with an ``Originate``, and with
``events_context`` set the events Skip2PBX ran scripts for run an extension of that
context (`scripts`).

Incoming call: on the first ``CallStatus`` with ``Direction: incoming`` and ``Status:
RINGING`` of a CallID, ``Originate`` runs ``incoming_context`` at the account name (``s``
when the name is no plain dialplan extension), on a Local channel, or with
``incoming_media = audiosocket`` on an AudioSocket channel carrying the call's audio,
with the caller as CallerID and ``SKYPE_CALL_ID``, ``SKYPE_ACCOUNT``, ``SKYPE_CALLER``,
``SKYPE_CALLER_NAME``, ``SKYPE_CALL_UUID``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Callable

from ..model.calls import CallStatus
from ..model.events import CallChanged, Event
from . import userevents
from .protocol import encode_action, escape_argument, escape_value, fit_value, value_budget
from .scripts import EVENT_SCRIPTS
from .settings import AmiSettings

Headers = tuple[tuple[str, str], ...]

HOLD: Headers = (("Application", "Wait"), ("Data", "86400"))
"""What the originated ``;1`` half of the Local channel runs once ``;2`` answers.

``;2`` runs the dialplan at the Channel's exten@context with the Originate's variables
(Asterisk copies them from ``;1``); ``;1`` only keeps the pair up, silently, and ends
when ``;2`` hangs up (after a day at the latest). ``Context``/``Exten`` pointing at the
same extension would run that dialplan a second time on ``;1``."""

_ROUTED_MEMORY = 1024  # incoming CallIDs remembered, so each call is originated once
_CALLERID_BUFFER = 255  # Asterisk copies CallerID into a 256-byte buffer
_VARIABLE = re.compile(r"[A-Za-z0-9_]+")
_EXTENSION = re.compile(r"[A-Za-z0-9+][A-Za-z0-9+_.-]{0,79}")
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DIRECTIONS = ("incoming", "outgoing")


@dataclass(frozen=True)
class Outgoing:
    """One action to send; ``headers[0]`` (UserEvent or Channel) names it."""

    action: str
    headers: Headers
    incoming: tuple[str, int] | None = None
    """(account, call id) of the incoming call this Originate routes."""

    def __post_init__(self) -> None:
        # Checked now: panoramisk would log an encoding error at send time and never answer.
        encode_action(self.action, self.headers)

    def __str__(self) -> str:
        return f"{self.action} {self.headers[0][1]}"


class ActionBuilder:
    """Turns events into `Outgoing` actions; remembers which incoming calls it routed."""

    def __init__(self, settings: AmiSettings, audiosocket_address: Callable[[], str]) -> None:
        self._settings = settings
        self._audiosocket_address = audiosocket_address
        self._routed: dict[int, None] = {}  # recent incoming CallIDs, oldest first

    def user_event(self, event: Event, seq: int) -> Outgoing:
        # field names come from userevents.USER_EVENTS, which holds none of the action's own headers
        headers = [("UserEvent", userevents.user_event(event)), _text("Account", event.account)]
        headers += [_text(name, value) for name, value in userevents.fields(event).items()]
        headers.append(("Seq", str(seq)))
        return Outgoing("UserEvent", tuple(headers))

    def incoming_call(self, event: CallChanged) -> Outgoing | None:
        """The Originate of a call that starts ringing here, once per call; ValueError for a UUID that names no channel."""
        if event.direction != "incoming" or event.status is not CallStatus.RINGING or event.call_id in self._routed:
            return None
        self._routed[event.call_id] = None
        if len(self._routed) > _ROUTED_MEMORY:
            del self._routed[next(iter(self._routed))]
        exten = event.account if _EXTENSION.fullmatch(event.account) else "s"
        channel, target = self._incoming_channel(exten, event.uuid)
        headers = self._originate(
            channel, target,
            [("CALL_ID", str(event.call_id)), ("ACCOUNT", event.account), ("CALLER", event.partner),
             ("CALLER_NAME", event.partner_name), ("CALL_UUID", event.uuid)],
            caller_id=_caller_id(event.partner_name, event.partner))
        return Outgoing("Originate", headers, incoming=(event.account, event.call_id))

    def event_script(self, event: Event) -> Outgoing | None:
        """The Originate that runs ``events_context`` for `event`, if it has a script and the context is set."""
        script = EVENT_SCRIPTS.get(type(event))
        context = self._settings.events_context
        if script is None or not context:
            return None
        fields = userevents.fields(event)
        direction = fields.get("Direction", "")
        if "{Direction}" in script.extension and direction not in _DIRECTIONS:
            raise ValueError(f"{userevents.kind(event)} event with Direction {direction!r} runs no extension")
        variables = [("ACCOUNT", event.account)]
        variables += [(script.variables.get(name) or _WORD_START.sub("_", name).upper(), value)
                      for name, value in fields.items()]
        channel = _local_channel(script.extension.format(Direction=direction), context)
        return Outgoing("Originate", self._originate(channel, HOLD, variables))

    @staticmethod
    def play_dtmf(channel: str, digit: str, receive: bool = False) -> Outgoing:
        """``PlayDTMF`` sends the digit out of `channel`; with `receive`, ``Receive: yes`` makes the
        channel take it as its own caller's key, for ``Background()``/``WaitExten()``/``Read()``."""
        headers = (_text("Channel", channel), _text("Digit", digit))
        return Outgoing("PlayDTMF", headers + ((("Receive", "yes"),) if receive else ()))

    def _incoming_channel(self, exten: str, call_uuid: str) -> tuple[str, Headers]:
        """The Channel of an incoming call's Originate and what it runs, per ``incoming_media``."""
        context = self._settings.incoming_context
        if self._settings.incoming_media == "local":
            return _local_channel(exten, context), HOLD
        # Asterisk connects to the gateway with the call's UUID; the channel answers by
        # itself, carries the call's audio (16 kHz) and runs the dialplan.
        channel = f"AudioSocket/{self._audiosocket_address()}/{uuid.UUID(call_uuid)}/c(slin16)"
        return channel, (("Context", context), ("Exten", exten), ("Priority", "1"))

    def _originate(self, channel: str, target: Headers, variables: list[tuple[str, str]],
                   caller_id: str | None = None) -> Headers:
        headers = [("Channel", channel), *target, ("Async", "true"),
                   ("Timeout", str(int(self._settings.originate_timeout * 1000)))]
        if caller_id is not None:
            headers.append(("CallerID", caller_id))
        headers += [self._variable(name, value) for name, value in variables]
        return tuple(headers)

    def _variable(self, name: str, text: str) -> tuple[str, str]:
        """``Variable: NAME=value``: Asterisk gets the escaped text, whatever commas or quotes it holds."""
        assignment = f"{self._settings.variable_prefix}{name}="
        if not _VARIABLE.fullmatch(assignment[:-1]):
            raise ValueError(f"invalid channel variable name {assignment[:-1]!r}")
        encode = lambda part: assignment + escape_argument(escape_value(part))  # noqa: E731
        return "Variable", fit_value(text, encode, value_budget("Variable"))


def _local_channel(exten: str, context: str) -> str:
    return f"Local/{exten}@{context}/n"


def _text(name: str, text: str) -> tuple[str, str]:
    """A header carrying Skype-side text: escaped, cut to fit Asterisk's line."""
    return name, fit_value(text, escape_value, value_budget(name))


def _caller_id(name: str, number: str) -> str:
    """``"name" <number>`` that Asterisk's CallerID parser reads back as given: quotes and
    backslashes escaped in the name, angle brackets dropped from the number, cut to fit
    Asterisk's buffer."""
    number = escape_value(number).replace("<", "").replace(">", "")
    quote = lambda text: escape_value(text).replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731
    budget = _CALLERID_BUFFER - len(f'"" <{number}>'.encode("utf-8"))
    return f'"{fit_value(name, quote, budget)}" <{number}>'
