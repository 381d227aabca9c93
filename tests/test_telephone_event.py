"""RFC 4733 telephone-events as bytes: payloads, RTP packets, the sender's packet train, the receiver's digits."""

from __future__ import annotations

import pytest

from fastagi.network.xmpp.telephone_event import (
    Receiver, Rtp, Sender, Timing, decode_event, decode_rtp, encode_event, encode_rtp,
)


def test_payloads_as_rfc_4733_writes_them() -> None:
    # RFC 4733 section 2.3: event 5, end bit, volume 10, duration 800 (100 ms at 8 kHz)
    assert encode_event(5, True, 10, 800) == bytes([0x05, 0x8A, 0x03, 0x20])
    assert encode_event(11, False, 10, 160) == bytes([0x0B, 0x0A, 0x00, 0xA0])  # '#', first packet
    assert decode_event(bytes([0x05, 0x8A, 0x03, 0x20, 0xFF])) == (5, True, 10, 800)
    with pytest.raises(ValueError):
        decode_event(b"\x05\x8a")
    with pytest.raises(ValueError):
        encode_event(5, False, 64, 0)


def test_rtp_packets() -> None:
    packet = Rtp(payload_type=101, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304, marker=True,
                 payload=encode_event(1, False, 10, 160))
    data = encode_rtp(packet)
    assert data[:12] == bytes([0x80, 0x80 | 101, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4])
    assert decode_rtp(data) == packet
    with_extension = bytes([0x90]) + data[1:12] + bytes([0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAA, 0, 0]) + data[12:]
    assert decode_rtp(with_extension).payload == packet.payload
    padded = bytes([0xA0]) + data[1:] + bytes([0, 0, 3])
    assert decode_rtp(padded).payload == packet.payload
    for bad in (b"", data[:11], bytes([0x40]) + data[1:], bytes([0x90]) + data[1:12]):
        with pytest.raises(ValueError):
            decode_rtp(bad)


def test_the_sender_plays_each_digit_as_a_phone_does() -> None:
    sender = Sender(Timing(clock_rate=8000, packet_ms=20, digit_ms=100, pause_ms=40))
    sender.send("1#")
    packets = []
    for tick in range(20):
        packets += [(tick, marker, ts, decode_event(payload)) for marker, ts, payload in sender.tick(tick * 160)]
    assert packets == [
        (0, True, 0, (1, False, 10, 160)), (1, False, 0, (1, False, 10, 320)), (2, False, 0, (1, False, 10, 480)),
        (3, False, 0, (1, False, 10, 640)),
        (4, False, 0, (1, True, 10, 800)), (4, False, 0, (1, True, 10, 800)), (4, False, 0, (1, True, 10, 800)),
        # a 40 ms pause, then '#' from its own start
        (7, True, 1120, (11, False, 10, 160)), (8, False, 1120, (11, False, 10, 320)),
        (9, False, 1120, (11, False, 10, 480)), (10, False, 1120, (11, False, 10, 640)),
        (11, False, 1120, (11, True, 10, 800)), (11, False, 1120, (11, True, 10, 800)),
        (11, False, 1120, (11, True, 10, 800)),
    ]
    assert not sender.busy
    with pytest.raises(ValueError):
        sender.send("1x")


def test_the_sender_at_opus_rate() -> None:
    sender = Sender(Timing(clock_rate=48000))
    sender.send("9")
    first = sender.tick(96000)
    assert first == [(True, 96000, encode_event(9, False, 10, 960))]


def test_the_receiver_reports_each_digit_once() -> None:
    receiver = Receiver()
    stream = []
    sender = Sender(Timing(clock_rate=8000, pause_ms=40))
    sender.send("12")
    for tick in range(20):
        stream += [Rtp(101, tick, ts, 7, marker, payload) for marker, ts, payload in sender.tick(tick * 160)]
    digits = [d for d in (receiver.receive(packet) for packet in stream + stream[:3]) if d]
    assert digits == ["1", "2"]  # end packets, and the whole train again, repeat nothing
    late = Receiver()
    assert [late.receive(p) for p in stream[2:4]] == ["1", None]  # the start packet lost: the digit still comes
    assert Receiver().receive(Rtp(101, 0, 5, 7, True, encode_event(200, False, 10, 160))) is None
    assert Receiver().receive(Rtp(101, 0, 5, 7, True, b"\x01")) is None
