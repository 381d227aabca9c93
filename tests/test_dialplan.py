"""The ready-to-include dialplan (dialplan/*.conf) against the gateway's action table.

Every `AGI(agi://HOST/ACTION?…,name=value)` must name a real action with argument names
it accepts (and its required ones), be followed in its extension by checks of
`AGISTATUS` and `SKYPE_STATUS`, and pass text through `${URIENCODE()}` in query strings.
A `Dial()` with `G()` must come after an `Answer()` of its channel (seen on Asterisk 22:
under `G()` Dial leaves the caller unanswered, and the incoming call's Originate fails).
The checker is run on small inline snippets too, so that it is known to catch each fault.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastagi.actions import ACTIONS

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplan"
FLOW_FILES = sorted(p for p in DIALPLAN.glob("*.conf") if p.name != "extensions.conf")

TEXT_ARGUMENTS = ("message-body", "sms-body")
CHECK_WINDOW = 3
"""Priorities after an AGI() within which both status checks must come."""

LOST_CHECK = '"${SKYPE_STATUS}" = ""'
_AGI_URL = re.compile(r"^agi://[^/]+/(?P<action>[^?]*)(?:\?(?P<query>.*))?$")
_ENCODED = re.compile(r"^\$\{URIENCODE\(.*\)\}$")


# -- reading dialplan ---------------------------------------------------------------
@dataclass(frozen=True)
class Priority:
    """One `exten =>` or `same =>` line: where it is, its extension, its application."""

    where: str
    context: str
    extension: str
    app: str
    data: str


def _strip_comment(line: str) -> str:
    """The line without its `;` comment (`\\;` is a literal semicolon)."""
    match = re.search(r"(?<!\\);", line)
    return (line[: match.start()] if match else line).strip()


def split_top(text: str, separator: str) -> list[str]:
    """Split at `separator` outside (), [] and {} (variables, functions, expressions)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _application(call: str) -> tuple[str, str]:
    """`AGI(data)` → ("AGI", "data"); `Hangup` → ("Hangup", "")."""
    name, paren, rest = call.partition("(")
    return name.strip(), rest[:-1] if paren and rest.endswith(")") else rest


def parse_dialplan(text: str, name: str) -> list[Priority]:
    """The priorities of a dialplan file, in order."""
    priorities: list[Priority] = []
    context = extension = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if line.startswith("["):
            context, extension = line[1 : line.index("]")], ""
            continue
        key, arrow, value = line.partition("=>")
        key = key.strip()
        if not arrow or key not in ("exten", "same"):
            continue
        if key == "exten":
            extension, _, value = value.strip().partition(",")
        _, _, call = value.strip().partition(",")
        app, data = _application(call)
        priorities.append(Priority(f"{name}:{number}", context, extension.strip(), app, data))
    return priorities


# -- the checks ---------------------------------------------------------------------
def _arguments(data: str) -> tuple[str, list[tuple[str, str]]]:
    """An AGI() call's action name and its (name, value) arguments, query ones first."""
    url, *agi_args = split_top(data, ",")
    match = _AGI_URL.match(url.strip())
    if match is None:
        return "", []
    query = match["query"]
    pairs = [part.partition("=")[::2] for part in split_top(query, "&")] if query else []
    pairs += [arg.partition("=")[::2] for arg in agi_args if arg]
    return match["action"], [(name.strip(), value) for name, value in pairs]


def _encoding_problems(query: str | None) -> list[str]:
    problems = []
    for name, value in (part.partition("=")[::2] for part in split_top(query or "", "&") if part):
        must_encode = name in TEXT_ARGUMENTS or ("$" in value and name != "call-id")
        if must_encode and not _ENCODED.match(value):
            problems.append(f"{name}={value} is not passed through ${{URIENCODE()}}")
    return problems


def agi_problems(priority: Priority) -> list[str]:
    """What is wrong with one AGI() call against the action table."""
    url = split_top(priority.data, ",")[0].strip()
    match = _AGI_URL.match(url)
    if match is None:
        return [f"{url!r} is not agi://HOST/ACTION"]
    action = ACTIONS.get(match["action"])
    if action is None:
        return [f"unknown action {match['action']!r}"]
    _, arguments = _arguments(priority.data)
    names = [name for name, _ in arguments]
    accepted = action.accepted_names()
    problems = [f"{action.name} does not accept {name!r} (accepted: {', '.join(accepted)})"
                for name in names if name not in accepted]
    problems += [f"{action.name}: {name!r} given twice" for name in sorted(set(names)) if names.count(name) > 1]
    problems += [f"{action.name} needs {argument.name!r}" for argument in action.arguments
                 if argument.required and argument.name not in names]
    return problems + _encoding_problems(match["query"])


def check_problems(priorities: list[Priority], index: int) -> list[str]:
    """The AGI() at `index` must be followed, in its extension and before any other
    AGI(), by both status checks (a later AGI() would replace the variables), one of
    them taking an empty SKYPE_STATUS for a lost gateway."""
    agi = priorities[index]
    following = []
    for priority in priorities[index + 1 : index + 1 + CHECK_WINDOW]:
        if (priority.context, priority.extension) != (agi.context, agi.extension) or priority.app.lower() == "agi":
            break
        following.append(priority.data)
    seen = " ".join(following)
    problems = [f"no check of {variable} within {CHECK_WINDOW} priorities after the AGI()"
                for variable in ("${AGISTATUS}", "${SKYPE_STATUS}") if variable not in seen]
    if not problems and LOST_CHECK not in seen:
        problems.append(f"an empty SKYPE_STATUS (gateway lost) is not checked: no {LOST_CHECK}")
    return problems


def clear_problems(priorities: list[Priority], index: int) -> list[str]:
    """The priority right before an AGI(), in its extension, clears SKYPE_STATUS: a FastAGI
    server lost mid-session leaves AGISTATUS=SUCCESS and the variable as it was (Asterisk 22)."""
    agi = priorities[index]
    before = priorities[index - 1] if index else None
    if before is None or (before.context, before.extension) != (agi.context, agi.extension) \
            or before.app != "Set" or before.data != "SKYPE_STATUS=":
        return ["SKYPE_STATUS is not cleared with Set(SKYPE_STATUS=) right before the AGI()"]
    return []


def goto_dial_problems(priorities: list[Priority], index: int) -> list[str]:
    """A `Dial()` with `G()` never answers its own channel (app_dial sends both channels to
    the dialplan before it would): a channel that must end up answered (the Local channel
    of an incoming call, whose Originate fails otherwise) answers before it."""
    dial = priorities[index]
    options = split_top(dial.data, ",")[2:3]
    if not options or "G(" not in options[0]:
        return []
    answered = any(p.app.lower() == "answer" and (p.context, p.extension) == (dial.context, dial.extension)
                   for p in priorities[:index])
    return [] if answered else ["Dial() with G() on a channel not answered before it"]


def dialplan_problems(text: str, name: str) -> list[str]:
    priorities = parse_dialplan(text, name)
    problems = []
    for index, priority in enumerate(priorities):
        if priority.app.lower() == "agi":
            found = agi_problems(priority) + clear_problems(priorities, index) + check_problems(priorities, index)
            problems += [f"{priority.where}: {p}" for p in found]
        elif priority.app.lower() == "dial":
            problems += [f"{priority.where}: {p}" for p in goto_dial_problems(priorities, index)]
    return problems


# -- the shipped files --------------------------------------------------------------
def test_the_dialplan_folder_has_the_flows() -> None:
    names = {p.name for p in FLOW_FILES}
    assert {"skype-click-to-call.conf", "skype-answering-machine.conf", "skype-automated-message.conf",
            "skype-route.conf", "skype-ivr.conf", "skype-chat-autoreply.conf", "skype-buddy-requests.conf",
            "skype-sms.conf", "skype-conference.conf", "skype-transfer.conf", "skype-hold.conf",
            "skype-voicemail.conf", "skype-dtmf.conf"} <= names


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda p: p.name)
def test_every_agi_call_is_a_real_action_checked_afterwards(path: Path) -> None:
    assert dialplan_problems(path.read_text(encoding="utf-8"), path.name) == []


def test_the_flows_together_call_every_kind_of_action_documented() -> None:
    called = {
        _arguments(p.data)[0]
        for path in FLOW_FILES
        for p in parse_dialplan(path.read_text(encoding="utf-8"), path.name)
        if p.app == "AGI"
    }
    assert {"call-start", "call-answer", "call-hangup", "call-set-input-file", "call-set-output-file",
            "calls-list", "call-vm", "call-transfer", "call-conference", "call-hold", "call-resume",
            "call-dtmf", "chatmessage-send", "user-set-auth", "sms-send"} <= called


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda p: p.name)
def test_each_file_documents_its_contexts_and_how_to_include_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    header = text.split("\n[", 1)[0]
    readme = (DIALPLAN / "README.md").read_text(encoding="utf-8")
    assert f'#include "skype-fastagi/{path.name}"' in header
    assert f'#include "skype-fastagi/{path.name}"' in readme
    for context in re.findall(r"^\[([^\]]+)\]", text, re.MULTILINE):
        assert context.startswith("skype-")
        assert context in header, f"{context} is not described in the header of {path.name}"
        assert f"`{context}`" in readme, f"{context} is not in dialplan/README.md"


def test_extensions_conf_includes_every_flow_file() -> None:
    includes = re.findall(r'^#include "([^"]+)"', (DIALPLAN / "extensions.conf").read_text(), re.MULTILINE)
    assert sorted(includes) == sorted(p.name for p in FLOW_FILES)


def test_asterisklint_reports_nothing() -> None:
    pytest.importorskip("asterisklint")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(["bash", str(DIALPLAN / "check.sh")], capture_output=True, text=True,
                          env={**os.environ, "PATH": path}, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_check_sh_fails_on_a_lint_error(tmp_path: Path) -> None:
    pytest.importorskip("asterisklint")
    for source in DIALPLAN.iterdir():
        shutil.copy(source, tmp_path / source.name)
    with open(tmp_path / "skype-dtmf.conf", "a", encoding="utf-8") as handle:
        handle.write(" same => n,Playbak(goodbye)\n")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(["bash", str(tmp_path / "check.sh")], capture_output=True, text=True,
                          env={**os.environ, "PATH": path}, timeout=60)
    assert done.returncode == 1
    assert "skype-dtmf.conf:" in done.stderr and "E_APP_MISSING" in done.stderr


# -- the checker catches each fault -------------------------------------------------
GOOD = """\
[skype-x]
exten => _7.,1(start),Set(SKYPE_STATUS=)
 same => n,AGI(agi://${SKYPEGW_AGI}/chatmessage-send?user-name=${URIENCODE(${EXTEN:1})}&message-body=${URIENCODE(${TEXT})})
 same => n,GotoIf($["${AGISTATUS}" != "SUCCESS" | "${SKYPE_STATUS}" = ""]?down)
 same => n,GotoIf($["${SKYPE_STATUS}" != "SUCCESS"]?failed)
 same => n,Set(SKYPE_STATUS=)
 same => n,AGI(agi://127.0.0.1:4573/call-hangup,call-id=${SKYPE_CALL_ID})
 same => n,ExecIf($["${AGISTATUS}${SKYPE_STATUS}" != "SUCCESSSUCCESS" | "${SKYPE_STATUS}" = ""]?Hangup())
"""


def _one_problem(snippet: str) -> str:
    problems = dialplan_problems(snippet, "snippet.conf")
    assert len(problems) == 1, problems
    return problems[0]


def test_a_correct_snippet_passes() -> None:
    assert dialplan_problems(GOOD, "snippet.conf") == []


def test_an_unknown_action_is_caught() -> None:
    assert "unknown action 'chatmessage-sent'" in _one_problem(GOOD.replace("chatmessage-send?", "chatmessage-sent?"))


def test_a_misspelled_argument_is_caught() -> None:
    problems = dialplan_problems(GOOD.replace("call-hangup,call-id=", "call-hangup,call-ids="), "snippet.conf")
    assert problems == [
        "snippet.conf:7: call-hangup does not accept 'call-ids' (accepted: call-id, account)",
        "snippet.conf:7: call-hangup needs 'call-id'",
    ]


def test_an_argument_of_another_action_is_caught() -> None:
    bad = GOOD.replace("call-hangup,call-id=${SKYPE_CALL_ID}", "call-hangup,call-id=${SKYPE_CALL_ID},user-name=bob")
    assert "call-hangup does not accept 'user-name'" in _one_problem(bad)


def test_an_argument_given_in_both_forms_is_caught() -> None:
    bad = GOOD.replace("call-hangup,call-id=", "call-hangup?call-id=1,call-id=")
    assert "'call-id' given twice" in _one_problem(bad)


def test_a_missing_status_check_is_caught() -> None:
    bad = GOOD.replace(' same => n,GotoIf($["${SKYPE_STATUS}" != "SUCCESS"]?failed)\n', "").replace(' | "${SKYPE_STATUS}" = ""]?down', ']?down')
    problems = dialplan_problems(bad, "snippet.conf")
    assert problems == ["snippet.conf:3: no check of ${SKYPE_STATUS} within 3 priorities after the AGI()"]


def test_a_status_not_cleared_before_the_agi_is_caught() -> None:
    """Seen on Asterisk 22.11: a gateway that closes mid-session leaves AGISTATUS=SUCCESS and
    an earlier action's SKYPE_STATUS=SUCCESS on the channel."""
    bad = GOOD.replace("exten => _7.,1(start),Set(SKYPE_STATUS=)\n same => n,AGI", "exten => _7.,1(start),AGI")
    assert _one_problem(bad) == "snippet.conf:2: SKYPE_STATUS is not cleared with Set(SKYPE_STATUS=) right before the AGI()"
    other = GOOD.replace(" same => n,Set(SKYPE_STATUS=)\n same => n,AGI(agi://127", " same => n,Set(SKYPE_ERROR=)\n same => n,AGI(agi://127")
    assert "not cleared" in _one_problem(other)


def test_an_empty_status_not_taken_for_a_lost_gateway_is_caught() -> None:
    bad = GOOD.replace(' | "${SKYPE_STATUS}" = ""]?down', ']?down')
    assert _one_problem(bad) == 'snippet.conf:3: an empty SKYPE_STATUS (gateway lost) is not checked: no "${SKYPE_STATUS}" = ""'


def test_a_check_in_another_extension_does_not_count() -> None:
    bad = ("[skype-x]\nexten => 1,1,Set(SKYPE_STATUS=)\n same => n,AGI(agi://h/calls-list)\n"
           "exten => 2,1,GotoIf($[\"${AGISTATUS}${SKYPE_STATUS}\" = \"\"]?x)\n")
    assert len(dialplan_problems(bad, "snippet.conf")) == 2


def test_a_check_in_a_comment_does_not_count() -> None:
    bad = GOOD.replace(' same => n,GotoIf($["${AGISTATUS}" != "SUCCESS" | "${SKYPE_STATUS}" = ""]?down)\n',
                       ' same => n,NoOp() ; ${AGISTATUS} "${SKYPE_STATUS}" = ""\n')
    assert "no check of ${AGISTATUS}" in _one_problem(bad)


def test_text_that_is_not_uri_encoded_is_caught() -> None:
    bad = GOOD.replace("message-body=${URIENCODE(${TEXT})}", "message-body=${TEXT}")
    assert "message-body=${TEXT} is not passed through ${URIENCODE()}" in _one_problem(bad)
    literal = GOOD.replace("message-body=${URIENCODE(${TEXT})}", "message-body=hello")
    assert "message-body=hello" in _one_problem(literal)
    user = GOOD.replace("user-name=${URIENCODE(${EXTEN:1})}", "user-name=${EXTEN:1}")
    assert "user-name=${EXTEN:1}" in _one_problem(user)


BRIDGE = """\
[skype-bridge]
exten => _[a-z].,1(start),Answer()
 same => n,Dial(AudioSocket/${SKYPEGW_AUDIOSOCKET}/${SKYPE_CALL_UUID}/c(slin16),,G(skype-bridge^${EXTEN}^joined))
 same => n(joined),Hangup()
exten => other,1,Dial(Local/100@phones,20,G(skype-bridge^other^x))
"""


def test_a_dial_with_g_on_an_unanswered_channel_is_caught() -> None:
    assert dialplan_problems(BRIDGE.replace("exten => other", "exten => othre", 0), "snippet.conf") == [
        "snippet.conf:5: Dial() with G() on a channel not answered before it"]  # the other extension's Answer() does not count
    assert dialplan_problems(BRIDGE.replace("Answer()\n same => n,", ""), "snippet.conf")[0].startswith(
        "snippet.conf:2: Dial() with G()")
    assert dialplan_problems("[x]\nexten => s,1,Dial(PJSIP/100,20,U(sub))\n", "snippet.conf") == []


def test_split_top_keeps_nested_separators() -> None:
    assert split_top("a=${URIENCODE(${X},y)}&b=$[1&2],c", "&") == ["a=${URIENCODE(${X},y)}", "b=$[1&2],c"]


# -- settings -----------------------------------------------------------------------
_SOUND = re.compile(r"\b(?P<app>Playback|Background)\((?P<sound>[^,)]*(?:\([^)]*\))?[^,)]*)")
_SETTING = re.compile(r"\$\{SKYPEGW_[A-Z0-9_]+\}")


def _globals() -> dict[str, str]:
    text = (DIALPLAN / "skype-globals.conf").read_text(encoding="utf-8")
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith(";"))


def _flow_priorities() -> list[Priority]:
    return [p for path in FLOW_FILES for p in parse_dialplan(path.read_text(encoding="utf-8"), path.name)]


def test_every_prompt_and_voicemail_option_is_a_setting() -> None:
    """A PBX without the stock sound packages, or in another language, changes settings, not flows."""
    played = [(p.where, match["sound"]) for p in _flow_priorities() for match in _SOUND.finditer(f"{p.app}({p.data})")]
    assert played and [(where, sound) for where, sound in played if not _SETTING.fullmatch(sound)] == []
    voicemail = [split_top(p.data, ",") for p in _flow_priorities() if p.app == "VoiceMail"]
    assert voicemail and all(len(args) == 2 and _SETTING.fullmatch(args[1]) for args in voicemail)


def test_the_prompt_settings_default_to_the_stock_prompts_and_each_is_used() -> None:
    settings = _globals()
    assert {name: value for name, value in settings.items() if name.startswith("SKYPEGW_PROMPT_")} == {
        "SKYPEGW_PROMPT_NO_SERVICE": "ss-noservice", "SKYPEGW_PROMPT_GATEWAY_DOWN": "all-circuits-busy-now",
        "SKYPEGW_PROMPT_INVALID": "option-is-invalid", "SKYPEGW_PROMPT_QUEUE_TIMEOUT": "tt-allbusy"}
    assert settings["SKYPEGW_MAILBOX_OPTIONS"] == "u"
    used = {name for p in _flow_priorities() for name in re.findall(r"SKYPEGW_[A-Z0-9_]+", p.data)}
    assert used == set(settings), "a setting no flow reads, or a flow reading a setting that is not there"


def test_an_empty_prompt_setting_plays_nothing() -> None:
    """Playback() with an empty argument fails and hangs the channel up: every prompt is guarded."""
    plays = [p for p in _flow_priorities() if "Playback(" in p.data or p.app == "Playback"]
    assert plays and all(p.app == "ExecIf" and re.match(r'\$\["\$\{(SKYPEGW_PROMPT_\w+)\}" != ""\]\?Playback\(\$\{\1\}', p.data)
                         for p in plays), [p.where for p in plays]


@pytest.mark.parametrize("flow, setting", [("skype-transfer", "SKYPEGW_TRANSFER_TO"),
                                           ("skype-conference", "SKYPEGW_CONFERENCE_WITH")])
def test_a_key_run_without_its_target_setting_says_which_setting(flow: str, setting: str) -> None:
    """*83 and *84 run the subroutines bare; the settings are empty by default."""
    assert _globals()[setting] == ""
    steps = [p for p in _flow_priorities() if p.context == flow]
    names = [p.data for p in steps]
    default = names.index(f"LOCAL(user)=${{{setting}}}")
    agi = next(i for i, p in enumerate(steps) if p.app == "AGI")
    assert default < agi - 1 and steps[default + 1].app == "GotoIf" and steps[default + 1].data == '$["${user}" = ""]?unset'
    text = (DIALPLAN / f"{flow}.conf").read_text(encoding="utf-8")
    logged = re.search(r"^ same => n\(unset\),Log\(WARNING,(?P<why>[^)]*)\)$", text, re.MULTILINE)
    assert logged and f"set {setting} in skype-globals.conf" in logged["why"]


# -- the modules the README lists -----------------------------------------------------
MODULE_OF = {
    # applications and functions outside Asterisk 22's core, by the module that registers them
    "AGI": "res_agi", "Dial": "app_dial", "Gosub": "app_stack", "Return": "app_stack", "LOCAL": "app_stack",
    "ExecIf": "app_exec", "While": "app_while", "EndWhile": "app_while", "Verbose": "app_verbose",
    "Log": "app_verbose", "Playback": "app_playback", "Queue": "app_queue", "VoiceMail": "app_voicemail",
    "URIENCODE": "func_uri", "STRFTIME": "func_strings", "IF": "func_logic", "DB": "func_db",
    "CHANNEL": "func_channel", "CALLERID": "func_callerid",
}
CORE = {"Answer", "Hangup", "Goto", "GotoIf", "GotoIfTime", "Set", "Wait", "WaitExten", "Background", "Ringing",
        "Progress", "Busy", "Congestion", "NoOp"}
INFRASTRUCTURE = {
    "pbx_config", "res_timing_timerfd", "res_speech", "res_audiosocket", "chan_audiosocket", "app_senddtmf",
    "res_musiconhold", "bridge_simple", "codec_resample", "format_wav",
}
"""What no application name shows: the dialplan loader, timing, res_agi's dependency,
AudioSocket, the gateway's PlayDTMF, queue music, Dial()'s bridge, 16 kHz resampling."""


def _readme_modules() -> list[str]:
    readme = (DIALPLAN / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^load => (\w+)\.so", readme, re.MULTILINE)


def test_the_readme_loads_every_module_the_flows_need() -> None:
    used = set()
    for p in _flow_priorities():
        used.add(p.app)
        used.update(re.findall(r"\b([A-Za-z]+)\(", p.data))
    used -= {"AudioSocket", "G", "U", "c"}  # Dial() strings and options, not applications
    unknown = sorted(name for name in used if name not in MODULE_OF and name not in CORE)
    assert unknown == [], "add the module of each to MODULE_OF (and to dialplan/README.md)"
    needed = {MODULE_OF[name] for name in used if name in MODULE_OF} | INFRASTRUCTURE
    listed = _readme_modules()
    assert sorted(needed - set(listed)) == []
    assert listed.index("res_speech") < listed.index("res_agi")
