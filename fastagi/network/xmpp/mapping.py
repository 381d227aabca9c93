"""How XMPP's model maps onto the Skype model of the gateway (no I/O).

Presence `show` values become the Skype API's online statuses, roster subscriptions
become buddy statuses, a vCard (vcard-temp, XEP-0054, or vCard4, RFC 6351 / XEP-0292)
becomes a `Profile`, and each contact's one-to-one chat has a stable name.
"""

from __future__ import annotations

import re
from typing import Iterable
from xml.etree.ElementTree import Element

from ...model.profiles import BUDDY_ADDED, BUDDY_NONE, BUDDY_PENDING, Profile

VCARD_TEMP = "vcard-temp"
VCARD4 = "urn:ietf:params:xml:ns:vcard-4.0"

SHOW_STATUS = {"": "ONLINE", "away": "AWAY", "xa": "NA", "dnd": "DND", "chat": "SKYPEME"}
OFFLINE = "OFFLINE"
UNKNOWN = "UNKNOWN"


def online_status(available: bool | None, show: str = "") -> str:
    """The Skype status of a contact's presence: `available` None when none was ever seen."""
    if available is None:
        return UNKNOWN
    if not available:
        return OFFLINE
    return SHOW_STATUS.get(show, UNKNOWN)


def buddy_status(subscription: str, pending_out: bool) -> int:
    """`SKYPE_USER_BUDDYSTATUS` of a roster item: 2 once the contact accepted, 1 while asked, else 0."""
    if subscription in ("to", "both"):
        return BUDDY_ADDED
    return BUDDY_PENDING if pending_out else BUDDY_NONE


def authorized(subscription: str) -> bool:
    """Whether the contact may see the account's presence (the account said yes to them)."""
    return subscription in ("from", "both")


def chat_name(account: str, contact: str) -> str:
    """The one-to-one chat of an account with a bare JID: stable for as long as both exist."""
    return f"#{account}/${contact}"


def birthday(text: str) -> str:
    """A vCard date (`1985-03-21`, `19850321`, `--03-21` without a year is not a birthday) as `YYYYMMDD`."""
    digits = re.fullmatch(r"\s*(\d{4})-?(\d{2})-?(\d{2})(?:T.*)?\s*", text)
    return "".join(digits.groups()) if digits else ""


def utc_offset_seconds(text: str) -> str:
    """A vCard time zone as Skype's offset in seconds: `+01:00`, `-0530`, `UTC+2`, or seconds (`3600`); "" for a name."""
    text = text.strip()
    match = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?", text)
    if match and int(match.group(2)) <= 14 and int(match.group(3) or 0) < 60:
        seconds = int(match.group(2)) * 3600 + int(match.group(3) or 0) * 60
        return str(-seconds if match.group(1) == "-" else seconds)
    return str(int(text)) if re.fullmatch(r"[+-]?\d{1,6}", text) else ""


def profile_from_vcard(handle: str, vcard: Element | None, status: str, mood: str) -> Profile:
    """The profile `get-user` returns: `vcard` is a `<vCard xmlns='vcard-temp'>` or `<vcard xmlns=vCard4>`, or None."""
    fields = _vcard4_fields(vcard) if vcard is not None and vcard.tag == f"{{{VCARD4}}}vcard" else _temp_fields(vcard)
    fullname = fields.get("fullname", "")
    return Profile(
        handle=handle, fullname=fullname, displayname=fields.get("nickname") or fullname,
        birthday=birthday(fields.get("birthday", "")), sex=fields.get("sex", "unknown"),
        language=fields.get("language", ""), country=fields.get("country", ""), province=fields.get("province", ""),
        city=fields.get("city", ""), phone_home=fields.get("phone_home", ""), phone_office=fields.get("phone_office", ""),
        phone_mobile=fields.get("phone_mobile", ""), homepage=fields.get("homepage", ""), mood_text=mood,
        timezone=utc_offset_seconds(fields.get("timezone", "")), online_status=status,
    )


def _text(element: Element | None, *path: str) -> str:
    """The text at `path` below `element` ("" when any step is missing)."""
    for step in path:
        if element is None:
            return ""
        element = element.find(step)
    return (element.text or "").strip() if element is not None else ""


def _temp_fields(vcard: Element | None) -> dict[str, str]:
    if vcard is None:
        return {}
    ns = f"{{{VCARD_TEMP}}}"
    address = next(iter(_with_type(vcard.findall(f"{ns}ADR"), ns, "HOME")), vcard.find(f"{ns}ADR"))
    fields = {
        "fullname": _text(vcard, f"{ns}FN"), "nickname": _text(vcard, f"{ns}NICKNAME"),
        "birthday": _text(vcard, f"{ns}BDAY"), "homepage": _text(vcard, f"{ns}URL"),
        "timezone": _text(vcard, f"{ns}TZ"), "country": _text(address, f"{ns}CTRY"),
        "province": _text(address, f"{ns}REGION"), "city": _text(address, f"{ns}LOCALITY"),
    }
    phones = vcard.findall(f"{ns}TEL")
    for key, kind in (("phone_home", "HOME"), ("phone_office", "WORK"), ("phone_mobile", "CELL")):
        fields[key] = next((_text(tel, f"{ns}NUMBER") for tel in _with_type(phones, ns, kind)), "")
    return fields


def _with_type(elements: Iterable[Element], ns: str, kind: str) -> list[Element]:
    """vcard-temp marks an address or phone's type with an empty child element (`<HOME/>`, `<CELL/>`)."""
    return [element for element in elements if element.find(f"{ns}{kind}") is not None]


def _vcard4_fields(vcard: Element) -> dict[str, str]:
    ns = f"{{{VCARD4}}}"
    address = vcard.find(f"{ns}adr")
    fields = {
        "fullname": _text(vcard, f"{ns}fn", f"{ns}text"), "nickname": _text(vcard, f"{ns}nickname", f"{ns}text"),
        "birthday": _text(vcard, f"{ns}bday", f"{ns}date") or _text(vcard, f"{ns}bday", f"{ns}text"),
        "homepage": _text(vcard, f"{ns}url", f"{ns}uri"), "language": _text(vcard, f"{ns}lang", f"{ns}language-tag"),
        "timezone": _text(vcard, f"{ns}tz", f"{ns}utc-offset") or _text(vcard, f"{ns}tz", f"{ns}text"),
        "country": _text(address, f"{ns}country"), "province": _text(address, f"{ns}region"),
        "city": _text(address, f"{ns}locality"),
    }
    sex = _text(vcard, f"{ns}gender", f"{ns}sex")
    fields["sex"] = {"M": "male", "F": "female"}.get(sex, "unknown")
    for tel in vcard.findall(f"{ns}tel"):
        kinds = {(kind.text or "").strip().lower() for kind in tel.findall(f"{ns}parameters/{ns}type/{ns}text")}
        number = (_text(tel, f"{ns}uri") or _text(tel, f"{ns}text")).removeprefix("tel:")
        for key, kind in (("phone_home", "home"), ("phone_office", "work"), ("phone_mobile", "cell")):
            if kind in kinds and not fields.get(key):
                fields[key] = number
    return fields


def ice_servers(services: Element | None) -> list[dict[str, str]]:
    """aiortc's RTCIceServer fields for the STUN/TURN services of an XEP-0215 answer (UDP ones)."""
    servers: list[dict[str, str]] = []
    for service in services.findall("{urn:xmpp:extdisco:2}service") if services is not None else ():
        kind, host, port = service.get("type", ""), service.get("host", ""), service.get("port", "")
        if kind not in ("stun", "turn") or not host or service.get("transport", "udp") != "udp":
            continue
        server = {"urls": f"{kind}:{host}:{port}" if port.isdigit() else f"{kind}:{host}"}
        if kind == "turn":
            server.update(username=service.get("username", ""), credential=service.get("password", ""))
        servers.append(server)
    return servers
