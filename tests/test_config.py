"""The configuration file refuses, with file and line, what would break the dialplan or the gateway."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import pytest

from fastagi.ami.settings import AmiSettings
from fastagi.config import DEFAULT_PATH, ENVIRONMENT, ConfigError, config_path, load_config, settings

ACCOUNT = "[alice]\ntype = account\n"


@pytest.mark.parametrize("section, line, reason", [
    ("[ami]\nincoming_context = bad@context\n", 2, "incoming_context: 'bad@context' is not a context name"),
    ("[ami]\nevents_context = a b\n", 2, "events_context: 'a b' is not a context name"),
    ("[general]\nvariable_prefix = SKYPE-\n", 2, "variable_prefix: 'SKYPE-' is not an upper-case variable prefix"),
    ("[ami]\nincoming_media = sip\n", 2, "incoming_media: 'sip' is not one of local, audiosocket"),
    ("[ami]\nqueue_size = 0\n", 2, "queue_size: 0 is outside 1..10000000"),
    ("[ami]\nincoming_media = audiosocket\n[audiosocket]\nenabled = no\n", 1,
     "[ami] incoming_media = audiosocket needs [audiosocket] enabled = yes"),
    ("[audiosocket]\nbind = 0.0.0.0\npermit = 10.0.0.300\n", 3, "permit: '10.0.0.300' is not an address or CIDR network"),
])
def test_settings_that_would_break_the_dialplan_are_refused(tmp_path: Path, section: str, line: int, reason: str) -> None:
    assert problems(tmp_path, section + ACCOUNT) == [f"{tmp_path / 'gateway.conf'}:{line}: {reason}"]


def problems(folder: Path, text: str) -> list[str]:
    """What loading a configuration file of `text` refuses, as printed."""
    path = folder / "gateway.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    return [str(problem) for problem in refused.value.problems]


def test_settings_are_built_from_the_sections_once_checked(tmp_path: Path) -> None:
    path = tmp_path / "gateway.conf"
    path.write_text("[general]\nvariable_prefix = SK_\nport = 4999\n[ami]\nenabled = yes\nusername = u\nport = 5039\n"
                    "originate_timeout = 12.5\n" + ACCOUNT)
    config = load_config(path)
    ami = settings(AmiSettings, config.ami, config.general)
    assert (ami.port, ami.username, ami.variable_prefix, ami.originate_timeout) == (5039, "u", "SK_", 12.5)
    assert ami.reconnect_max == AmiSettings.reconnect_max  # no key for it: the default


@pytest.mark.parametrize("text, general, audiosocket", [
    ("", ["127.0.0.1/32"], ["127.0.0.1/32"]),
    ("[general]\npermit = 10.1.0.0/16\npermit = 10.2.0.5\n", ["10.1.0.0/16", "10.2.0.5/32"], ["10.1.0.0/16", "10.2.0.5/32"]),
    ("[general]\npermit = 10.1.0.0/16\n[audiosocket]\npermit = 10.9.0.7\n", ["10.1.0.0/16"], ["10.9.0.7/32"]),
])
def test_audiosocket_permit_defaults_to_the_fastagi_one(tmp_path: Path, text: str, general: list[str],
                                                         audiosocket: list[str]) -> None:
    path = tmp_path / "gateway.conf"
    path.write_text(text + ACCOUNT)
    config = load_config(path)
    assert [str(net) for net in config.general.permit] == general
    assert [str(net) for net in config.audiosocket.permit] == audiosocket


XMPP = "[alice]\ntype = account\nnetwork = xmpp\n"


@pytest.mark.parametrize("keys, line, reason", [
    ("jid = alice@\npassword = s\n", 4, "jid: 'alice@' is not a JID (domain doesn’t pass idna validation)"),
    ("jid = alice@example.org/phone\npassword = s\n", 4,
     "jid: 'alice@example.org/phone' is not a bare JID user@domain (set the resource with resource =)"),
    ("jid = alice@example.org\npassword = s\nxmpp_tls = none\n", 6,
     "xmpp_tls = none sends the password in clear: only to a loopback server, not 'example.org'"),
    ("jid = alice@example.org\n", 1, "[alice] network = xmpp needs a password"),
    ("password = s\n", 1, "[alice] network = xmpp needs jid = user@domain"),
    ("jid = alice@example.org\npassword = s\nturn_server = turn.example.org:3478\nturn_username = u\n", 6,
     "turn_server needs turn_username and turn_password"),
    ("jid = alice@example.org\npassword = s\nstun_server = stun.example.org\n", 6,
     "stun_server: 'stun.example.org' is not host:port"),
    ("jid = alice@example.org\npassword = s\ncall_policy = friends\n", 6,
     "call_policy: 'friends' is not one of anyone, contacts"),
])
def test_xmpp_account_keys_are_checked_with_file_and_line(tmp_path: Path, keys: str, line: int, reason: str) -> None:
    assert problems(tmp_path, XMPP + keys) == [f"{tmp_path / 'gateway.conf'}:{line}: {reason}"]


def test_xmpp_keys_on_an_embedded_account_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.conf"
    assert problems(tmp_path, ACCOUNT + "jid = alice@example.org\nstun_server = stun.example.org:3478\n") == [
        f"{path}:3: jid: [alice] is not on the xmpp network (network = xmpp)",
        f"{path}:4: stun_server: [alice] is not on the xmpp network (network = xmpp)"]


def test_a_file_without_an_account_serves_demo_as_the_defaults_do(tmp_path: Path) -> None:
    path = tmp_path / "gateway.conf"
    path.write_text("[general]\nport = 4999\n[audiosocket]\nport = 4998\n")
    config = load_config(path)
    assert (config.general.port, config.audiosocket.port) == (4999, 4998)
    assert list(config.accounts) == ["demo"] and config.accounts["demo"].balance == 1000
    path.write_text("[carol]\ntype = user\n" + ACCOUNT)
    assert list(load_config(path).accounts) == ["alice"]  # an account of its own: no demo


def test_the_file_a_command_reads(tmp_path: Path) -> None:
    etc = tmp_path / "etc.conf"
    given = str(tmp_path / "given.conf")
    assert config_path(None, {}, etc) is None  # no file anywhere: the embedded defaults
    etc.write_text(ACCOUNT)
    assert config_path(None, {}, etc) == etc  # the system's file, once it exists
    assert config_path(None, {ENVIRONMENT: "/srv/gw.conf"}, etc) == Path("/srv/gw.conf")
    assert config_path(None, {ENVIRONMENT: ""}, etc) is None  # set empty: no file at all
    assert config_path(given, {ENVIRONMENT: "/srv/gw.conf"}, etc) == Path(given)  # --config wins
    assert DEFAULT_PATH == Path("/etc/skype-fastagi/skype-fastagi.conf")


@pytest.mark.parametrize("text, line, reason", [
    ("[genral]\nport = 4999\n", 1,
     "unknown section [genral]: did you mean [general]? (an account or a user needs type = account or type = user)"),
    ("[AMI]\nenabled = no\n", 1,
     "unknown section [AMI]: did you mean [ami]? (an account or a user needs type = account or type = user)"),
    ("[dora]\nfullname = Dora\n", 1, "section [dora] needs type = account or type = user"),
    ("[bob]\nfullname = Bob\ntype = acount\n", 3, "type: 'acount' is not one of account, user: did you mean account?"),
    ("[bob]\ntype = user\n[BOB]\ntype = user\n", 3, "[BOB] is [bob] again (line 1): Skype names ignore case"),
    ("[general]\nmedia_dir = {tmp}\n[carol]\ntype = user\ngreeting = hello.wav\n", 5,
     "greeting: {tmp}/hello.wav does not exist"),
    ("[carol]\ntype = user\ngreeting = {tmp}/notes.txt\n", 3,
     "greeting: {tmp}/notes.txt: not a WAV file (shorter than a RIFF header)"),
])
def test_mistakes_are_named_where_they_are(tmp_path: Path, text: str, line: int, reason: str) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    assert problems(tmp_path, text.format(tmp=tmp_path) + ACCOUNT) == [
        f"{tmp_path / 'gateway.conf'}:{line}: {reason.format(tmp=tmp_path)}"]


def test_a_greeting_is_found_under_media_dir(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "hello.wav"), "wb") as writer:  # a tenth of a second of silence
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(bytes(1600))
    path = tmp_path / "gateway.conf"
    path.write_text(f"[general]\nmedia_dir = {tmp_path}\n[carol]\ntype = user\ngreeting = hello.wav\n" + ACCOUNT)
    assert load_config(path).users["carol"].greeting == tmp_path / "hello.wav"


def test_uvloop_is_refused_where_it_is_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.conf"
    path.write_text("[general]\nevent_loop = uvloop\n" + ACCOUNT)
    assert load_config(path).general.event_loop == "uvloop"  # installed with the test tools
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not: find_spec answers None
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert [str(problem) for problem in refused.value.problems] == [
        f"{path}:2: event_loop: uvloop is not installed here (pip install 'skype-fastagi[uvloop]')"]


def test_a_problem_of_the_whole_file_names_no_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    with pytest.raises(ConfigError) as refused:
        load_config(missing)
    assert [str(problem) for problem in refused.value.problems] == [f"{missing}: cannot read: No such file or directory"]
