"""The configuration file refuses, with file and line, what would break the dialplan or the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastagi.ami.settings import AmiSettings
from fastagi.config import ConfigError, load_config, settings

ACCOUNT = "[alice]\ntype = account\n"


@pytest.mark.parametrize("section, line, reason", [
    ("[ami]\nincoming_context = bad@context\n", 2, "incoming_context: 'bad@context' is not a context name"),
    ("[ami]\nevents_context = a b\n", 2, "events_context: 'a b' is not a context name"),
    ("[general]\nvariable_prefix = SKYPE-\n", 2, "variable_prefix: 'SKYPE-' is not an upper-case variable prefix"),
    ("[ami]\nincoming_media = sip\n", 2, "incoming_media: 'sip' is not one of local, audiosocket"),
    ("[ami]\nqueue_size = 0\n", 2, "queue_size: 0 is outside 1..10000000"),
    ("[ami]\nincoming_media = audiosocket\n[audiosocket]\nenabled = no\n", 1,
     "[ami] incoming_media = audiosocket needs [audiosocket] enabled = yes"),
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
