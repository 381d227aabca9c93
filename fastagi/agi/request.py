"""From an AGI environment to (action name, raw arguments).

`agi_network_script` holds everything after the URL's first `/`: the action name, then
`?name=value&…` percent-encoded (`+` is kept as it is: `${URIENCODE()}` writes a space
as `%20`). `agi_arg_N` are `name=value` taken literally. A name given twice, in either
form or across both, is `invalid-argument`.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from ..model import errors
from ..model.errors import SkypeError
from .protocol import Environment


def _decode(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise SkypeError(errors.INVALID_ARGUMENT, f"{what} is not valid UTF-8 once percent-decoded") from None


def _add(args: dict[str, str], name: str, value: str) -> None:
    if not name:
        raise SkypeError(errors.INVALID_ARGUMENT, "an argument has an empty name")
    if name in args:
        raise SkypeError(errors.INVALID_ARGUMENT, f"argument {name!r} given twice")
    args[name] = value


def action_name(environment: Environment) -> str:
    script = environment.get("agi_network_script")
    return script.partition("?")[0].strip("/")


def parse_arguments(environment: Environment) -> dict[str, str]:
    script = environment.get("agi_network_script")
    _, _, query = script.partition("?")
    args: dict[str, str] = {}
    for part in query.split("&") if query else ():
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise SkypeError(errors.INVALID_ARGUMENT, f"query part {_decode(name, 'a name')[:40]!r} is not name=value")
        _add(args, _decode(name, "an argument name"), _decode(value, f"the value of {name[:40]!r}"))
    for number, argument in enumerate(environment.arguments, 1):
        if argument == "":
            continue  # AGI(agi://…/x,) leaves an empty agi_arg_1
        name, sep, value = argument.partition("=")
        if not sep:
            raise SkypeError(errors.INVALID_ARGUMENT, f"AGI argument {number} ({argument[:40]!r}) is not name=value")
        _add(args, name.strip(), value)
    return args
