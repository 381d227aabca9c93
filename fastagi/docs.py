"""README sections generated from the declarations (actions, configuration keys).

`python -m fastagi.docs` rewrites them in README.md; a test fails when they are stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .actions import ACTIONS
from .actions.registry import variable
from .ami.scripts import EVENT_SCRIPTS
from .ami.userevents import USER_EVENTS
from .config import SCHEMA

PREFIX = "SKYPE_"


def _returns(name: str) -> str:
    action = ACTIONS[name]
    names = [f"`{variable(PREFIX, r)}`" for r in action.returns]
    if action.returns_list:
        spec = action.returns_list
        base = variable(PREFIX, spec.name)
        extras = "".join(f", `{base}_<i>_{e.upper()}`" for e in spec.extras)
        names.append(f"`{base}_COUNT`, `{base}_<i>`{extras}")
    return ", ".join(names) or "—"


def action_table() -> str:
    rows = ["| action | arguments | returns | errors | what it does |", "| --- | --- | --- | --- | --- |"]
    for name in sorted(ACTIONS):
        action = ACTIONS[name]
        args = ", ".join(f"`{a.name}`" + ("" if a.required else " (optional)") for a in action.arguments) or "—"
        errors = ", ".join(f"`{e}`" for e in action.all_errors())
        rows.append(f"| `{name}` | {args} | {_returns(name)} | {errors} | {action.doc} |")
    return "\n".join(rows)


def config_table() -> str:
    out = []
    for section, keys in SCHEMA.items():
        title = f"[{section}]" if section not in ("account", "user") else f"[NAME] with type = {section}"
        out += [f"**{title}**", "", "| key | default | meaning |", "| --- | --- | --- |"]
        for key in keys:
            default = "" if key.default is None else str(key.default)
            out.append(f"| `{key.name}` | `{default}` | {key.doc} |")
        out.append("")
    return "\n".join(out).rstrip()


def events_table() -> str:
    rows = ["| UserEvent | fields (after `Account`) | events_context extension |", "| --- | --- | --- |"]
    for event_type, (kind, fields) in USER_EVENTS.items():
        script = EVENT_SCRIPTS.get(event_type)
        names = sorted({script.extension.format(Direction=d) for d in ("incoming", "outgoing")}) if script else []
        extension = " / ".join(f"`{name}`" for name in names) or "—"
        rows.append(f"| `Skype{kind}` | {', '.join(f'`{header}`' for header, _ in fields)} | {extension} |")
    return "\n".join(rows)


SECTIONS = {"actions": action_table, "config": config_table, "events": events_table}


def render(readme: str) -> str:
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        text = build()
        readme = pattern.sub(lambda m, text=text: m.group(1) + text + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
