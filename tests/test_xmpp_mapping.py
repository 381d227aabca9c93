"""How XMPP's model maps onto the Skype model (no server): statuses, buddy states, vCards, chat names."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from fastagi.network.xmpp import mapping


@pytest.mark.parametrize("available, show, status", [
    (True, "", "ONLINE"), (True, "away", "AWAY"), (True, "xa", "NA"), (True, "dnd", "DND"), (True, "chat", "SKYPEME"),
    (True, "bogus", "UNKNOWN"), (False, "", "OFFLINE"), (None, "", "UNKNOWN"),
])
def test_presence_becomes_the_skype_status(available: bool | None, show: str, status: str) -> None:
    assert mapping.online_status(available, show) == status


@pytest.mark.parametrize("subscription, pending, buddy, authorized", [
    ("none", False, 0, False), ("none", True, 1, False), ("from", True, 1, True), ("to", False, 2, False),
    ("both", False, 2, True),
])
def test_roster_subscription_becomes_buddy_status(subscription: str, pending: bool, buddy: int, authorized: bool) -> None:
    assert (mapping.buddy_status(subscription, pending), mapping.authorized(subscription)) == (buddy, authorized)


@pytest.mark.parametrize("text, seconds", [("+01:00", "3600"), ("-0530", "-19800"), ("3600", "3600"), ("UTC+2", "7200"),
                                           ("Europe/Paris", ""), ("", "")])
def test_time_zones_become_offsets_in_seconds(text: str, seconds: str) -> None:
    assert mapping.utc_offset_seconds(text) == seconds


@pytest.mark.parametrize("text, day", [("1985-03-21", "19850321"), ("19850321", "19850321"),
                                       ("1985-03-21T00:00:00Z", "19850321"), ("--03-21", ""), ("", "")])
def test_birthdays_become_yyyymmdd(text: str, day: str) -> None:
    assert mapping.birthday(text) == day


def test_a_vcard_temp_with_typed_phones_and_a_home_address() -> None:
    vcard = ElementTree.fromstring(
        "<vCard xmlns='vcard-temp'><FN>Zoë Example</FN><BDAY>1990-05-17</BDAY><TZ>-05:00</TZ>"
        "<ADR><WORK/><LOCALITY>Paris</LOCALITY></ADR><ADR><HOME/><LOCALITY>Lyon</LOCALITY><CTRY>France</CTRY></ADR>"
        "<TEL><CELL/><VOICE/><NUMBER>+33600000000</NUMBER></TEL><TEL><HOME/><NUMBER>+33478000000</NUMBER></TEL></vCard>")
    profile = mapping.profile_from_vcard("zoe@example.org", vcard, "AWAY", "out")
    assert (profile.fullname, profile.displayname, profile.birthday, profile.timezone) == (
        "Zoë Example", "Zoë Example", "19900517", "-18000")
    assert (profile.city, profile.country) == ("Lyon", "France")  # the home address, not the work one
    assert (profile.phone_mobile, profile.phone_home, profile.phone_office) == ("+33600000000", "+33478000000", "")
    assert (profile.online_status, profile.mood_text) == ("AWAY", "out")


def test_a_vcard4() -> None:
    ns = "urn:ietf:params:xml:ns:vcard-4.0"
    vcard = ElementTree.fromstring(
        f"<vcard xmlns='{ns}'><fn><text>Bob</text></fn><nickname><text>Bobby</text></nickname>"
        "<bday><date>1985-03-21</date></bday><gender><sex>M</sex></gender><lang><language-tag>fr</language-tag></lang>"
        "<tz><utc-offset>+0100</utc-offset></tz><url><uri>https://example.org</uri></url>"
        "<adr><locality>Lyon</locality><region>Rhône</region><country>France</country></adr>"
        "<tel><parameters><type><text>cell</text></type></parameters><uri>tel:+33600000000</uri></tel></vcard>")
    profile = mapping.profile_from_vcard("bob@example.org", vcard, "ONLINE", "")
    assert (profile.fullname, profile.displayname, profile.birthday, profile.sex, profile.language) == (
        "Bob", "Bobby", "19850321", "male", "fr")
    assert (profile.timezone, profile.homepage, profile.city, profile.province, profile.country) == (
        "3600", "https://example.org", "Lyon", "Rhône", "France")
    assert profile.phone_mobile == "+33600000000"


def test_no_vcard_leaves_the_profile_empty_but_for_presence() -> None:
    profile = mapping.profile_from_vcard("x@example.org", None, "OFFLINE", "")
    assert (profile.handle, profile.fullname, profile.online_status, profile.sex) == ("x@example.org", "", "OFFLINE", "unknown")


def test_the_chat_of_a_contact_has_one_name() -> None:
    assert mapping.chat_name("alice", "bob@example.org") == "#alice/$bob@example.org"


def test_extdisco_services_become_ice_servers() -> None:
    services = ElementTree.fromstring(
        '<services xmlns="urn:xmpp:extdisco:2">'
        '<service type="stun" host="stun.example.org" port="3478" transport="udp"/>'
        '<service type="turn" host="turn.example.org" port="3479" transport="udp" username="u" password="p"/>'
        '<service type="turns" host="turn.example.org" port="5349" transport="tcp"/>'
        '<service type="turn" host="turn.example.org" port="3479" transport="tcp" username="u" password="p"/>'
        '<service type="stun" host="stun2.example.org"/>'
        '<service type="stun" port="3478"/>'
        '</services>')
    assert mapping.ice_servers(services) == [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": "turn:turn.example.org:3479", "username": "u", "credential": "p"},
        {"urls": "stun:stun2.example.org"},
    ]
    assert mapping.ice_servers(None) == []
