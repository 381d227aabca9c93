"""AudioSocket framing: what Asterisk sends parses to the right frames however it is cut,
every broken message is refused, and the encoder only produces what Asterisk accepts."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from doubles.audiosocket_client import captured_sessions
from fastagi.audiosocket.protocol import (
    AudioSocketParser,
    Frame,
    Kind,
    ProtocolError,
    State,
    encode_audio,
    encode_hangup,
)

SESSIONS = captured_sessions()
DTMF_SESSION = SESSIONS["AudioSocket() app: SendDTMF 12# on the other leg"]
CAPTURED_UUID = DTMF_SESSION[0].payload
CAPTURED_DTMF_SESSION = b"".join(m.on_the_wire() for m in DTMF_SESSION)
UUID_MESSAGE = DTMF_SESSION[0].on_the_wire()


def message(kind: int, payload: bytes) -> bytes:
    return struct.pack("!BH", kind, len(payload)) + payload


def open_parser() -> AudioSocketParser:
    parser = AudioSocketParser()
    assert parser.feed(UUID_MESSAGE) == [Frame(Kind.UUID, CAPTURED_UUID)]
    return parser


@pytest.mark.parametrize("title", SESSIONS)
def test_every_captured_session_parses_to_its_messages(title: str) -> None:
    captured = SESSIONS[title]
    frames = AudioSocketParser().feed(b"".join(m.on_the_wire() for m in captured))
    assert [(frame.kind, len(frame.payload)) for frame in frames] == [(m.kind, m.length) for m in captured]
    assert all(frame.payload.startswith(m.payload) for frame, m in zip(frames, captured))


def test_captured_dtmf_session_parses_to_uuid_and_digits() -> None:
    parser = AudioSocketParser()
    assert parser.state is State.AWAIT_UUID
    assert parser.feed(CAPTURED_DTMF_SESSION) == [
        Frame(Kind.UUID, CAPTURED_UUID),
        Frame(Kind.DTMF, b"1"),
        Frame(Kind.DTMF, b"2"),
        Frame(Kind.DTMF, b"#"),
    ]
    assert parser.state is State.OPEN


def test_audio_frames_of_both_capture_rates() -> None:
    slin = bytes(range(256)) + bytes(64)
    parser = open_parser()
    assert parser.feed(message(0x10, slin) * 2) == [Frame(Kind.AUDIO_8K, slin)] * 2
    slin16 = bytes(640)
    parser = open_parser()
    assert parser.feed(message(0x12, slin16)) == [Frame(Kind.AUDIO_16K, slin16)]


STREAM = b"".join(
    [
        UUID_MESSAGE,
        message(0x10, bytes(range(200)) + bytes(120)),
        message(0x03, b"9"),
        message(0xFF, b"\x02"),
        message(0x10, b"\x01\x02" * 160),
    ]
)


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM)), max_size=20))
def test_any_chunking_gives_the_same_frames(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    parser = AudioSocketParser()
    frames = [frame for start, end in zip(bounds, bounds[1:]) for frame in parser.feed(STREAM[start:end])]
    assert frames == AudioSocketParser().feed(STREAM)
    kinds = [frame.kind for frame in frames]
    assert kinds == [Kind.UUID, Kind.AUDIO_8K, Kind.DTMF, Kind.ERROR, Kind.AUDIO_8K]


def test_byte_by_byte() -> None:
    parser = AudioSocketParser()
    frames = [frame for byte in CAPTURED_DTMF_SESSION for frame in parser.feed(bytes([byte]))]
    assert [frame.payload for frame in frames] == [CAPTURED_UUID, b"1", b"2", b"#"]


def test_every_audio_kind_is_known_with_its_limit() -> None:
    rates = {
        0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000,
        0x15: 44100, 0x16: 48000, 0x17: 96000, 0x18: 192000,
    }  # fmt: skip
    for kind, rate in rates.items():
        longest = rate // 10 * 2  # 100 ms
        parser = open_parser()
        assert parser.feed(message(kind, bytes(longest))) == [Frame(Kind(kind), bytes(longest))]
        with pytest.raises(ProtocolError, match="allowed"):
            open_parser().feed(message(kind, bytes(longest + 2)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (message(0x10, bytes(320)), "first message is AUDIO_8K"),
        (message(0x03, b"1"), "first message is DTMF"),
        (message(0x00, b""), "first message is HANGUP"),
        (b"\x01\x00\x0f" + bytes(15), "UUID message of 15 bytes"),
        (b"\x01\x00\x11", "UUID message of 17 bytes"),
        (b"GET / HTTP/1.1\r\n", "unknown message kind 0x47"),
    ],
)
def test_bad_opening_is_refused(data: bytes, reason: str) -> None:
    parser = AudioSocketParser()
    with pytest.raises(ProtocolError, match=reason):
        parser.feed(data)
    assert parser.state is State.CLOSED
    with pytest.raises(ProtocolError, match="after the connection closed"):
        parser.feed(UUID_MESSAGE)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02\x00\x00", "unknown message kind 0x02"),
        (b"\x19\x00\x02\x00\x00", "unknown message kind 0x19"),
        (b"\x10\xff\xff", "AUDIO_8K message of 65535 bytes"),
        (b"\x10\x06\x42", "AUDIO_8K message of 1602 bytes"),
        (message(0x10, b"\x00\x00\x00"), "not whole samples"),
        (message(0x10, b""), "AUDIO_8K message of 0 bytes"),
        (message(0x03, b"x"), "DTMF digit b'x'"),
        (message(0x03, b"12"), "DTMF message of 2 bytes"),
        (message(0x00, b"\x00"), "HANGUP message of 1 bytes"),
        (UUID_MESSAGE, "a second UUID"),
        (message(0x10, bytes(320)) + message(0x12, bytes(640)), "audio changed from AUDIO_8K to AUDIO_16K"),
    ],
)
def test_bad_message_after_uuid_is_refused(data: bytes, reason: str) -> None:
    parser = open_parser()
    with pytest.raises(ProtocolError, match=reason):
        parser.feed(data)
    assert parser.state is State.CLOSED


def test_oversized_length_is_refused_without_waiting_for_its_payload() -> None:
    parser = open_parser()
    assert parser.feed(b"\x10\xff") == []
    with pytest.raises(ProtocolError):
        parser.feed(b"\xff")


def test_hangup_closes_and_ignores_what_follows() -> None:
    parser = open_parser()
    frames = parser.feed(message(0x03, b"5") + b"\x00\x00\x00" + b"junk")
    assert frames == [Frame(Kind.DTMF, b"5"), Frame(Kind.HANGUP, b"")]
    assert parser.state is State.CLOSED


def test_encode_audio_is_exact() -> None:
    assert encode_audio(0x10, b"\x01\x02" * 160) == b"\x10\x01\x40" + b"\x01\x02" * 160
    assert encode_audio(Kind.AUDIO_16K, bytes(640)) == b"\x12\x02\x80" + bytes(640)
    assert encode_hangup() == b"\x00\x00\x00"


@pytest.mark.parametrize("kind", [0x00, 0x01, 0x03, 0x02, 0x19, 0xFF])
def test_encoder_refuses_kinds_asterisk_would_end_the_session_on(kind: int) -> None:
    with pytest.raises(ValueError, match="not audio"):
        encode_audio(kind, bytes(320))


@pytest.mark.parametrize("size", [0, 3, 65536])
def test_encoder_refuses_bad_audio_payloads(size: int) -> None:
    with pytest.raises(ValueError, match="audio payload"):
        encode_audio(0x10, bytes(size))


def test_encoded_audio_parses_back() -> None:
    pcm = bytes(range(256)) * 2 + bytes(128)
    parser = open_parser()
    assert parser.feed(encode_audio(0x12, pcm)) == [Frame(Kind.AUDIO_16K, pcm)]
