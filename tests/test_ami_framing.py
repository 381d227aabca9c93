"""The AMI codec: framing of Asterisk's stream, action encoding, value escaping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastagi.ami.protocol import (
    MAX_LINE,
    AmiParser,
    encode_action,
    escape_argument,
    escape_value,
    fit_value,
    unescape_value,
    value_budget,
)
from doubles.ami_server import split_arguments

# From captures/ami-sessions.txt: greeting, an answer, and the UserEvent a CR/LF forged.
STREAM = (
    b"Asterisk Call Manager/11.0.0\r\n"
    b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
    b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: SkypeChatMessage\r\n"
    b"Account: bob\r\nBody: line1\r\nEvent: Injected\r\n\r\n"
)
EXPECTED = [
    [("Response", "Success"), ("ActionID", "1"), ("Message", "Authentication accepted")],
    [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", "SkypeChatMessage"),
     ("Account", "bob"), ("Body", "line1"), ("Event", "Injected")],
]


def parse(*chunks: bytes, parser: AmiParser | None = None) -> list[list[tuple[str, str]]]:
    parser = parser or AmiParser()
    return [list(message.headers) for chunk in chunks for message in parser.feed(chunk)]


def test_greeting_and_messages() -> None:
    parser = AmiParser()
    assert parse(STREAM, parser=parser) == EXPECTED
    assert parser.greeting == "Asterisk Call Manager/11.0.0"


def test_any_split_of_the_stream_gives_the_same_messages() -> None:
    for cut in range(len(STREAM) + 1):
        assert parse(STREAM[:cut], STREAM[cut:]) == EXPECTED, cut
    assert parse(*(STREAM[i:i + 1] for i in range(len(STREAM)))) == EXPECTED


def test_repeated_header_kept_in_order_first_value_wins() -> None:
    [_, event] = AmiParser().feed(STREAM)
    assert event.get("event") == "UserEvent"
    assert event.get_all("EVENT") == ["UserEvent", "Injected"]
    assert event.first_values()["Event"] == "UserEvent"
    assert event.get("Missing") is None


def test_bare_lf_line_ends_and_stray_blank_lines() -> None:
    assert parse(b"\r\nResponse: Success\nPing: Pong\n\n\r\n") == [[("Response", "Success"), ("Ping", "Pong")]]


def test_value_keeps_all_but_the_first_space() -> None:
    assert parse(b"A:  two spaces\r\nB:none\r\nC: x: y\r\n\r\n") == [
        [("A", " two spaces"), ("B", "none"), ("C", "x: y")]]


def test_oversized_line_drops_its_message_only() -> None:
    parser = AmiParser(max_line=64)
    long_line = b"Body: " + b"x" * 200 + b"\r\n"
    messages = parse(b"Event: Big\r\n", long_line[:100], long_line[100:], b"Tail: 1\r\n\r\n",
                     b"Event: Next\r\n\r\n", parser=parser)
    assert messages == [[("Event", "Next")]]
    assert parser.discarded == 1


def test_a_line_never_ending_is_not_buffered() -> None:
    parser = AmiParser(max_line=64)
    for _ in range(1000):
        parser.feed(b"y" * 1000)
    assert len(parser._buffer) < 64
    assert parse(b"\r\n\r\nEvent: Next\r\n\r\n", parser=parser) == [[("Event", "Next")]]
    assert parser.discarded == 1


def test_oversized_message_is_dropped() -> None:
    parser = AmiParser(max_message=100)
    many = b"".join(b"H%d: value\r\n" % i for i in range(20))
    assert parse(b"Event: Big\r\n" + many + b"\r\nEvent: Next\r\n\r\n", parser=parser) == [[("Event", "Next")]]
    assert parser.discarded == 1


def test_encode_action_exact_bytes() -> None:
    assert encode_action("UserEvent", [("UserEvent", "SkypeChatMessage"), ("Body", "héllo"), ("ActionID", "3")]) == (
        "Action: UserEvent\r\nUserEvent: SkypeChatMessage\r\nBody: héllo\r\nActionID: 3\r\n\r\n".encode()
    )


@pytest.mark.parametrize("name", ["", "Bad Name", "X:Y", "Événement", "A\r\nB"])
def test_encode_action_refuses_header_names(name: str) -> None:
    with pytest.raises(ValueError, match="header name"):
        encode_action("UserEvent", [(name, "v")])


@pytest.mark.parametrize("value", ["a\r\nEvent: Fake", "a\nb", "a\rb", "nul\x00", "tab\t"])
def test_encode_action_refuses_unescaped_control_characters(value: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        encode_action("UserEvent", [("Body", value)])


def test_encode_action_refuses_what_asterisk_would_refuse() -> None:
    fits = "x" * value_budget("Body")
    assert len(encode_action("UserEvent", [("Body", fits)]).split(b"\r\n")[1]) + 2 == MAX_LINE
    with pytest.raises(ValueError, match="1024"):
        encode_action("UserEvent", [("Body", fits + "x")])
    with pytest.raises(ValueError, match="128"):
        encode_action("UserEvent", [(f"H{i}", "v") for i in range(128)])


def test_escape_table() -> None:
    assert escape_value("hi\r\nEvent: Fake\r\n") == "hi\\r\\nEvent: Fake\\r\\n"
    assert escape_value("a\\b\tc\x00\x1b\x7f\x85") == "a\\\\b\\tc\\x00\\x1b\\x7f\\x85"
    assert escape_value("x\u2028y\u2029z\ud800") == "x\\u2028y\\u2029z\\ud800"
    assert escape_value("Grüße, 你好 \"quoted\" 😀") == "Grüße, 你好 \"quoted\" 😀"


@given(st.text())
def test_escape_round_trip_and_one_line(text: str) -> None:
    escaped = escape_value(text)
    assert unescape_value(escaped) == text
    assert len(escaped.splitlines()) <= 1
    encode_action("UserEvent", [("Body", fit_value(text, escape_value, value_budget("Body")))])


@pytest.mark.parametrize("bad", ["\\", "a\\q", "\\x4", "\\X41", "\\u12"])
def test_unescape_refuses_what_escape_never_makes(bad: str) -> None:
    with pytest.raises(ValueError):
        unescape_value(bad)


@given(st.text())
def test_asterisk_reads_an_escaped_argument_back_as_one(text: str) -> None:
    assert split_arguments(escape_argument(text)) == [text]


def test_escape_argument_of_a_forged_variable() -> None:
    value = escape_argument(escape_value('hi, there,SKYPE_ACCOUNT=evil "q" (p [b'))
    assert split_arguments("SKYPE_MESSAGE_BODY=" + value) == [
        'SKYPE_MESSAGE_BODY=hi, there,SKYPE_ACCOUNT=evil "q" (p [b']


@given(st.text(min_size=1), st.integers(min_value=3, max_value=60))
def test_fit_value_cuts_between_characters(text: str, budget: int) -> None:
    fitted = fit_value(text, escape_value, budget)
    assert len(fitted.encode()) <= budget
    if fitted != escape_value(text):
        assert fitted.endswith("...")
        assert text.startswith(unescape_value(fitted[:-3]))


def test_fit_value_keeps_what_fits() -> None:
    assert fit_value("short", escape_value, 5) == "short"
    assert fit_value("a\nbcdef", escape_value, 8) == "a\\nbcdef"
    assert fit_value("a\nbcdef", escape_value, 7) == "a\\nb..."
    assert fit_value("a\nbcdef", escape_value, 5) == "a..."  # never "a\..."
