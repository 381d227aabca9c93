"""The sans-I/O FastAGI core, fed the bytes Asterisk 22 really sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastagi.agi.protocol import (
    AgiConnection, AgiProtocolError, Closed, Environment, Hangup, Limits, Reply, State,
    quote_value, set_variable,
)

CAPTURE = Path(__file__).parent / "captures" / "agi-session.txt"


def asterisk_lines() -> list[bytes]:
    """The `A>` lines of the captured session, as bytes."""
    lines = []
    for raw in CAPTURE.read_text().splitlines():
        if raw.startswith("A> "):
            lines.append(eval(raw[3:]).encode())  # the capture stores Python literals
    return lines


def environment_bytes() -> bytes:
    lines = asterisk_lines()
    end = lines.index(b"\n")
    return b"".join(lines[: end + 1])


def test_captured_environment_parses_with_query_and_arguments() -> None:
    events = AgiConnection().receive_data(environment_bytes())
    assert len(events) == 1 and isinstance(events[0], Environment)
    env = events[0]
    assert env.get("agi_network_script") == "call-start?account=alice&user-name=echo123"
    assert env.get("agi_accountcode") == ""
    assert env.arguments == ["extra=1", "two words"]


def test_environment_split_into_single_bytes() -> None:
    connection = AgiConnection()
    events = []
    for byte in environment_bytes():
        events += connection.receive_data(bytes([byte]))
    assert [type(e) for e in events] == [Environment]
    assert connection.state is State.IDLE


def test_replies_of_the_captured_session_in_order() -> None:
    lines = asterisk_lines()
    connection = AgiConnection()
    connection.receive_data(b"".join(lines[: lines.index(b"\n") + 1]))
    replies = lines[lines.index(b"\n") + 1:]
    for _ in range(10):
        connection.send_command("NOOP")
    events = connection.receive_data(b"".join(replies))
    kinds = [type(e).__name__ if not isinstance(e, Reply) else e.code for e in events]
    assert kinds == [200, 200, 200, 200, 510, 520, 200, "Hangup", 200, 511, 200]
    assert events[1].data == 'a "quoted" value'
    assert events[2].result == "0" and events[2].data is None
    assert events[3].data == "Local/s@cap-00000000;2"
    assert events[5].lines[0].startswith("520-Invalid") and events[5].lines[-1] == "520 End of proper usage."
    assert len(events[5].lines) == 7
    assert events[6].result == "-1"
    assert connection.state is State.IDLE


def test_hangup_between_replies_does_not_shift_them() -> None:
    connection = AgiConnection()
    connection.receive_data(b"agi_network: yes\n\n")
    connection.send_command("VERBOSE x 1")
    events = connection.receive_data(b"HANGUP\n200 result=1\n")
    assert events == [Hangup(), Reply(200, "1", None, ("200 result=1",))]


def test_520_split_across_chunks_is_one_reply() -> None:
    connection = AgiConnection()
    connection.receive_data(b"\n")
    connection.send_command("STREAM FILE")
    assert connection.receive_data(b"520-Invalid command syntax.  Proper usage follows:\nUsage") == []
    events = connection.receive_data(b": x\n520 End of proper usage.\n")
    assert [e.code for e in events] == [520]


@pytest.mark.parametrize("data, reason", [
    (b"x" * 9000, "line longer"),
    (b"agi_x: " + b"y" * 9000 + b"\n", "line longer"),
    (b"agi_ok: \xff\xfe\n", "UTF-8"),
    (b"not an agi line\n", "malformed"),
    (b"".join(b"agi_arg_%d: a\n" % i for i in range(1, 200)) + b"\n", "too many"),
])
def test_bad_environment_is_a_protocol_error(data: bytes, reason: str) -> None:
    with pytest.raises(AgiProtocolError, match=reason):
        AgiConnection().receive_data(data)


@pytest.mark.parametrize("data, variables", [
    (b"agi_a: 1\r\nagi_b:2\r\n\r\nHANGUP\n", {"agi_a": "1", "agi_b": "2"}),  # CRLF lines; one leading space dropped
    (b"agi_a:  two spaces\n\r\n", {"agi_a": " two spaces"}),  # only one space is the separator's
    (b"\n", {}),
    (b"\r\n", {}),
    (b"agi_arg_2: b\nagi_arg_1: a=1\nagi_x: agi_arg_9\n\n", {"agi_x": "agi_arg_9"}),
])
def test_environment_endings_and_values(data: bytes, variables: dict[str, str]) -> None:
    events = AgiConnection().receive_data(data)
    environment = events[0]
    assert isinstance(environment, Environment)
    assert environment.variables == variables
    assert environment.arguments == (["a=1", "b"] if b"agi_arg_1" in data else [])


def test_a_flood_of_hangups_is_refused() -> None:
    connection = AgiConnection()
    assert connection.receive_data(b"\n" + b"HANGUP\n" * 8)[1:] == [Hangup()] * 8  # Asterisk sends one; a few are tolerated
    with pytest.raises(AgiProtocolError, match="more than 8 HANGUP lines"):
        connection.receive_data(b"HANGUP\n")


def test_endless_usage_block_is_refused() -> None:
    connection = AgiConnection()
    connection.receive_data(b"\n")
    connection.send_command("SET VARIABLE A 1")
    with pytest.raises(AgiProtocolError, match="usage block longer than 64 lines"):
        connection.receive_data(b"520-Invalid command syntax.\n" + b"usage\n" * 64)


def test_malformed_line_is_named_even_after_good_ones() -> None:
    with pytest.raises(AgiProtocolError, match="malformed environment line: 'oops: 1'"):
        AgiConnection().receive_data(b"agi_network: yes\nagi_channel: x\noops: 1\nagi_y: 2\n")


def test_argument_number_out_of_range_is_refused() -> None:
    with pytest.raises(AgiProtocolError, match="out of range"):
        AgiConnection().receive_data(b"agi_arg_1234567: a\n\n")


def test_environment_size_limit() -> None:
    connection = AgiConnection(Limits(max_environment=100))
    with pytest.raises(AgiProtocolError, match="environment larger"):
        connection.receive_data(b"".join(b"agi_k%d: vvvvvvvvvvvv\n" % i for i in range(10)))


def test_eof_is_closed_event() -> None:
    connection = AgiConnection()
    assert connection.receive_data(b"agi_network: yes\n") == []
    assert connection.receive_data(b"") == [Closed()]
    assert connection.state is State.CLOSED


def test_unsolicited_reply_is_an_error() -> None:
    connection = AgiConnection()
    connection.receive_data(b"\n")
    with pytest.raises(AgiProtocolError):
        connection.receive_data(b"200 result=1\n")


def test_value_quoting_round_trips_through_asterisk_parse_args() -> None:
    from doubles.asterisk_agi import parse_args

    for value in ['a "quoted" value', "back\\slash", "", "x;y,z&é", "two  spaces"]:
        argv = parse_args(set_variable("FOO", value))
        assert argv == ["SET", "VARIABLE", "FOO", value]


def test_control_characters_become_spaces_and_long_values_are_cut() -> None:
    assert quote_value("a\r\nb\tc") == '"a  b c"'
    long = quote_value("é" * 8000)
    assert len(long.encode()) < 8192 and long.endswith('é"')


def test_command_limits() -> None:
    connection = AgiConnection()
    connection.receive_data(b"\n")
    with pytest.raises(ValueError):
        connection.send_command("SET VARIABLE A 1\nHANGUP")
    with pytest.raises(ValueError):
        connection.send_command("VERBOSE " + "x" * 9000)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(0, 3), st.booleans())
def test_any_bytes_give_events_or_a_protocol_error(chunks: list[bytes], commands: int, whole: bool) -> None:
    connection = AgiConnection(Limits(max_line=256, max_environment=4096))
    try:
        connection.receive_data(environment_bytes() if whole else environment_bytes()[:40])
        for chunk in chunks:
            if connection.state is State.IDLE:
                for _ in range(commands):
                    connection.send_command("NOOP")
            connection.receive_data(chunk)
    except AgiProtocolError:
        pass
