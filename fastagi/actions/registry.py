"""The action table: every action declared once, with its handler beside it.

An `Action` holds the name, the arguments (with validators), the returned variables,
the errors it can answer with, and a one-line doc. Routing, argument validation,
result variables, the README's reference table and the parametrised tests all read
`ACTIONS`; nothing else lists actions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..model import errors
from ..model.capabilities import Feature
from ..model.errors import SkypeError
from ..model.profiles import SKYPE_NAME

# -- validators: text in, value out, ValueError with a reason ---------------------
_BARE_JID = re.compile(r"^[^@/\s\"&'<>:]{1,1023}@[^@/\s]{1,1023}$")
"""user@domain, no resource: what an XMPP account calls a user (the network checks it further)."""
_DTMF = re.compile(r"^[0-9*#]{1,32}$")
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


def text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def user_name(value: str) -> str:
    """A user of the account's network: a Skype name (embedded), or a bare JID (XMPP)."""
    if not (SKYPE_NAME.match(value) or _BARE_JID.match(value)):
        raise ValueError("is not a user name (a Skype name: a letter, then letters, digits or . , - _ :; "
                         "or a bare JID such as bob@example.org)")
    return value


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError("must be True or False")
    return lowered == "true"


def call_id(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) == 0 or len(value) > 18:
        raise ValueError("is not a call id (a positive whole number)")
    return int(value)


def dtmf(value: str) -> str:
    if not _DTMF.match(value):
        raise ValueError("must be 1 to 32 DTMF digits 0-9, * or #")
    return value


def phone(value: str) -> str:
    if not _PHONE.match(value):
        raise ValueError("is not a phone number (digits, optionally with a leading +)")
    return value


def file_name(value: str) -> str:
    if not value or "\x00" in value:
        raise ValueError("is not a file name")
    return value


# -- declarations ----------------------------------------------------------------
@dataclass(frozen=True)
class Argument:
    name: str
    doc: str
    validate: Callable[[str], Any] = text
    required: bool = True

    @property
    def param(self) -> str:
        """The handler's keyword for this argument (`user-name` → `user_name`)."""
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class ListResult:
    """A returned list: `<PREFIX><NAME>_COUNT`, `<PREFIX><NAME>_<i>`, and `_<i>_<EXTRA>`."""

    name: str
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    value: str
    extras: dict[str, str] = field(default_factory=dict)


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Action:
    name: str
    doc: str
    handler: Handler
    arguments: tuple[Argument, ...] = ()
    returns: tuple[str, ...] = ()
    returns_list: ListResult | None = None
    errors: tuple[str, ...] = ()
    uses_account: bool = True
    needs: Feature | None = None
    """What the account's network must offer; without it the action is `not_supported`."""

    def all_errors(self) -> tuple[str, ...]:
        """Every code this action can answer with, its own and the common ones."""
        common = [errors.INVALID_ARGUMENT]
        if self.uses_account:
            common.append(errors.UNKNOWN_ACCOUNT)
        if self.needs is not None:
            common.append(errors.NOT_SUPPORTED)
        return tuple(dict.fromkeys([*common, *self.errors, errors.INTERNAL_ERROR]))

    def accepted_names(self) -> tuple[str, ...]:
        """Its own arguments plus `account` (accepted everywhere, ignored where unused)."""
        return (*(a.name for a in self.arguments), "account")

    def validate(self, raw: dict[str, str]) -> dict[str, Any]:
        """Check names and values; the handler's keyword arguments, or invalid-argument."""
        accepted = self.accepted_names()
        for name in raw:
            if name not in accepted:
                raise SkypeError(errors.INVALID_ARGUMENT, f"unknown argument {name!r} for {self.name} (accepted: {', '.join(accepted)})")
        values: dict[str, Any] = {}
        for argument in self.arguments:
            if argument.name not in raw:
                if argument.required:
                    raise SkypeError(errors.INVALID_ARGUMENT, f"{self.name} needs the argument {argument.name!r}")
                continue
            try:
                values[argument.param] = argument.validate(raw[argument.name])
            except ValueError as exc:
                raise SkypeError(errors.INVALID_ARGUMENT, f"{argument.name}: {raw[argument.name][:40]!r} {exc}") from None
        return values


ACTIONS: dict[str, Action] = {}


def action(
    name: str,
    doc: str,
    *,
    arguments: tuple[Argument, ...] = (),
    returns: tuple[str, ...] = (),
    returns_list: ListResult | None = None,
    errors: tuple[str, ...] = (),
    uses_account: bool = True,
    needs: Feature | None = None,
) -> Callable[[Handler], Handler]:
    """Declare an action; the decorated coroutine is its handler."""

    def register(handler: Handler) -> Handler:
        if name in ACTIONS:
            raise ValueError(f"action {name} declared twice")
        ACTIONS[name] = Action(name, doc, handler, arguments, returns, returns_list, errors, uses_account, needs)
        return handler

    return register


@functools.lru_cache(maxsize=4096)  # the same few names, for every session
def variable(prefix: str, name: str) -> str:
    """`call-id` → `SKYPE_CALL_ID`."""
    return prefix + name.upper().replace("-", "_")
