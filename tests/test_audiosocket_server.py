"""The AudioSocket server against an Asterisk double on real sockets: audio makes the round
trip through an echo at the right pitch and with little delay, DTMF and hangups reach the
call side, and bad peers are dropped one by one without stalling anything."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pytest

from bench.audiosocket_path import EchoCalls
from conftest import connect_from
from fastagi.audiosocket.port import MediaCounters
from fastagi.audiosocket.server import AudioSocketConnection, AudioSocketServer
from fastagi.media.engine import MediaEngine
from fastagi.model.audio import FRAME_BYTES
from doubles.audiosocket_client import DTMF, HEADER, SLIN, SLIN16, AsteriskAudioSocket, captured_sessions

T = TypeVar("T")
KNOWN = uuid.UUID("0c4e3a7e-6f1e-4a53-9a4e-6f5d2f0c9b11")
UNKNOWN = uuid.UUID("0c4e3a7e-6f1e-4a53-9a4e-6f5d2f0c9b12")
HANGUP_MESSAGE = b"\x00\x00\x00"
SHORT_TIMEOUT = 0.3


async def echo(conn: AudioSocketConnection) -> None:
    """The engine with echo123 on the other end: what it hears, it says back, every 20 ms.

    Its clock is unrelated to Asterisk's. It starts half a frame after the connection
    (the typical phase) rather than on the very moment Asterisk's frames arrive, where a
    measured delay would flip by a whole frame depending on which of the two came first.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() - 0.010
    tick = 0
    while not conn.closed:
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * 0.020 - loop.time()))
        conn.write_frame(conn.read_frame())


@dataclass
class FakeBinder:
    echo: bool = False
    attached: dict[uuid.UUID, AudioSocketConnection] = field(default_factory=dict)
    refused: list[uuid.UUID] = field(default_factory=list)
    digits: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    detached_calls: list[uuid.UUID] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def attach(self, call: uuid.UUID, conn: AudioSocketConnection) -> bool:
        if call != KNOWN:
            self.refused.append(call)
            return False
        self.attached[call] = conn
        if self.echo:
            self.tasks.append(asyncio.create_task(echo(conn)))
        return True

    def dtmf(self, call: uuid.UUID, digit: str) -> None:
        self.digits.append((call, digit))

    def detached(self, call: uuid.UUID) -> None:
        self.detached_calls.append(call)


class LagMonitor:
    """Ticks every 10 ms and remembers how late it woke up at worst."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.010)
            self.worst = max(self.worst, loop.time() - before - 0.010)

    async def stop(self) -> float:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.worst


@pytest.fixture(params=[False, True], ids=["transport", "poller"])
def polled(request: pytest.FixtureRequest) -> bool:
    """Whether attached sockets are read and written by the engine's poller rather than their transports."""
    return request.param


@asynccontextmanager
async def serving(binder: FakeBinder, polled: bool = False, permit: str = "127.0.0.1/32",
                  **options: float) -> AsyncIterator[AudioSocketServer]:
    """A server; with `polled`, a running engine is its clock, so attached sockets go to its poller."""
    engine = MediaEngine()
    server = AudioSocketServer("127.0.0.1", 0, binder, clock=engine if polled else None,
                               permit=[ipaddress.ip_network(permit)], **options)
    await server.start()
    engine.start()
    try:
        yield server
    finally:
        await server.stop()
        await engine.stop()
        for task in binder.tasks:
            task.cancel()
        await asyncio.gather(*binder.tasks, return_exceptions=True)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 15))


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def tone_burst(rate: int, silence_s: float, tone_s: float, amplitude: int = 8000, freq: float = 440) -> bytes:
    t = np.arange(int(rate * tone_s)) / rate
    tone = (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2")
    return bytes(int(rate * silence_s) * 2) + tone.tobytes()


CAPTURED = captured_sessions()


@pytest.mark.parametrize(
    ("title", "kind", "digits"),
    [
        ("AudioSocket() app (8 kHz): a tone played on the other leg", SLIN, ""),
        ("AudioSocket() app: SendDTMF 12# on the other leg", SLIN, "12#"),
        ("Dial(AudioSocket/127.0.0.1:14575/<uuid>/c(slin16)): a tone on the other leg", SLIN16, ""),
        ("Dial(AudioSocket/...): SendDTMF 9 on the other leg", SLIN16, "9"),
    ],
)
def test_the_asterisk_double_sends_what_asterisk_sent(title: str, kind: int, digits: str) -> None:
    captured = CAPTURED[title]
    audio = [m for m in captured if m.kind == kind]

    async def scenario() -> bytes:
        heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            heard.set_result(await reader.read())
            writer.close()

        listener = await asyncio.start_server(listen, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        client = await AsteriskAudioSocket.connect(port, uuid.UUID(bytes=captured[0].payload), kind)
        await client.send_audio(b"".join(m.payload.ljust(m.length, b"\0") for m in audio))
        for digit in digits:
            client.send_dtmf(digit)
        await client.hang_up()
        listener.close()
        return await asyncio.wait_for(heard, 2)

    assert asyncio.run(scenario()) == b"".join(m.on_the_wire() for m in captured)


@pytest.mark.parametrize("kind", [SLIN, SLIN16])
def test_tone_comes_back_through_an_echo_at_440_hz_with_little_delay(kind: int) -> None:
    async def scenario() -> None:
        binder = FakeBinder(echo=True)
        async with serving(binder) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN, kind)
            rate, frame_bytes = client.rate, client.frame_bytes
            sent = await client.send_audio(tone_burst(rate, 0.3, 0.7))
            await asyncio.sleep(0.2)
            await client.hang_up()
            counters = server.counters

        audio = [r for r in client.received if r.kind != 0x00]
        kinds = [r.kind for r in audio]
        # Before Asterisk's first audio the server speaks 8 kHz; from then on, Asterisk's rate.
        first = kinds.index(kind)
        assert set(kinds[:first]) <= {SLIN} and set(kinds[first:]) == {kind}
        answers = audio[first:]
        assert {len(r.payload) for r in answers} == {frame_bytes}

        samples = np.frombuffer(b"".join(r.payload for r in answers), dtype="<i2").astype(float)
        onset = int(np.argmax(np.abs(samples) > 4000))
        assert onset > 0, "the tone never came back"
        frame, offset = divmod(onset, frame_bytes // 2)
        heard_at = answers[frame].at + offset / rate
        delay = heard_at - sent[15]  # the tone starts with the 16th message, 300 ms in
        assert 0 < delay < 0.060, f"round trip added {delay * 1000:.1f} ms"

        tone = samples[onset + rate // 10 : onset + rate // 10 + rate // 2]
        spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)), 8 * len(tone))) ** 2
        freqs = np.fft.rfftfreq(8 * len(tone), 1 / rate)
        assert freqs[np.argmax(spectrum)] == pytest.approx(440, abs=2)
        assert spectrum[np.abs(freqs - 440) < 30].sum() > 0.95 * spectrum.sum()
        assert np.sqrt(np.mean(tone**2)) == pytest.approx(8000 / np.sqrt(2), rel=0.05)
        assert counters.frames_in == len(sent)

    run(scenario)


def test_media_counters_add_up_field_by_field() -> None:
    """The server's counters are the sum of its connections': every field with its own kind."""
    total = MediaCounters(1, 2, 3, 4, 5) + MediaCounters(10, 20, 30, 40, 50) + MediaCounters()
    assert total == MediaCounters(frames_in=11, frames_out=22, dropped_in=33, dropped_out=44, underruns=55)


@pytest.mark.parametrize("kind", [SLIN, SLIN16])
def test_calls_through_the_engine_each_hear_their_own_tone_back(kind: int) -> None:
    """The engine's ticks move every connection's audio at once; nobody hears another call."""
    freqs = [400 + 150 * n for n in range(6)]

    async def scenario() -> list[AsteriskAudioSocket]:
        engine = MediaEngine()
        server = AudioSocketServer("127.0.0.1", 0, EchoCalls(engine), clock=engine)
        await server.start()
        engine.start()
        try:
            clients = [await AsteriskAudioSocket.connect(server.port, uuid.uuid4(), kind) for _ in freqs]
            rate = clients[0].rate
            await asyncio.gather(*(
                client.send_audio(tone_burst(rate, 0.1, 0.7, freq=freq)) for client, freq in zip(clients, freqs)
            ))  # fmt: skip
            await asyncio.sleep(0.1)
            for client in clients:
                await client.hang_up()
        finally:
            await engine.stop()
            await server.stop()
        return clients

    for client, freq in zip(run(scenario), freqs):
        samples = np.frombuffer(b"".join(r.payload for r in client.received if r.kind == kind), "<i2").astype(float)
        onset = int(np.argmax(np.abs(samples) > 4000))
        tone = samples[onset + client.rate // 10 : onset + client.rate // 2]
        spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)), 8 * len(tone))) ** 2
        found = np.fft.rfftfreq(8 * len(tone), 1 / client.rate)
        assert found[np.argmax(spectrum)] == pytest.approx(freq, abs=2)
        assert spectrum[np.abs(found - freq) < 30].sum() > 0.95 * spectrum.sum()
        assert np.sqrt(np.mean(tone**2)) == pytest.approx(8000 / np.sqrt(2), rel=0.05)


class EchoHearingDigits(EchoCalls):
    """echo123 on every call, as in the gateway, and the DTMF digits the calls sent."""

    def __init__(self, engine: MediaEngine) -> None:
        super().__init__(engine)
        self.digits: list[str] = []

    def dtmf(self, call: uuid.UUID, digit: str) -> None:
        self.digits.append(digit)


def through_the_poller(chunks: list[bytes]) -> tuple[list[bytes], list[str]]:
    """Write `chunks` on a 16 kHz call bridged to echo123 by the engine, each a tick and more after the one before
    (so each is one read of the poller); the audio that came back (but silence) and the digits heard."""

    async def scenario() -> tuple[AsteriskAudioSocket, EchoHearingDigits]:
        engine = MediaEngine()
        binder = EchoHearingDigits(engine)
        server = AudioSocketServer("127.0.0.1", 0, binder, clock=engine)
        await server.start()
        engine.start()
        try:
            client = await AsteriskAudioSocket.connect(server.port, uuid.uuid4(), SLIN16)
            for chunk in chunks:
                client.writer.write(chunk)
                await asyncio.sleep(0.035)
            await asyncio.sleep(0.2)
            assert server.rejected == 0 and server.active == 1
            await client.hang_up()
        finally:
            await engine.stop()
            await server.stop()
        return client, binder

    client, binder = run(scenario)
    return [r.payload for r in client.received if r.kind == SLIN16 and any(r.payload)], binder.digits


def test_a_message_split_across_reads_is_put_together_even_when_a_read_looks_like_a_whole_one() -> None:
    """The poller hands a read that is exactly one audio message straight to the jitter buffer, past the parser;
    not while the parser holds part of a message: then a read of a message's length that starts with bytes like an
    audio header is the end of one message and the start of the next. (16 kHz: the echo sends back exactly what
    it was given.)"""
    header = HEADER.pack(SLIN16, 640)
    payloads = [np.full(320, 1000 * (n + 1), "<i2").tobytes() for n in range(8)]
    payloads[2] = payloads[2][:97] + header + payloads[2][100:]  # message 3's bytes 100-102 read as a header
    messages = [header + payload for payload in payloads]
    stream = messages[2] + messages[3]
    chunks = [messages[0], messages[1], stream[:100], stream[100:743], stream[743:], *messages[4:]]
    assert len(chunks[3]) == len(header) + 640 and chunks[3].startswith(header)

    heard, _ = through_the_poller(chunks)
    assert heard[:6] == payloads[:6]


def test_a_read_of_whole_frames_goes_to_the_jitter_buffer_only_when_every_message_in_it_is_audio() -> None:
    """A tick late, a read holds two frames or more: they go straight to the jitter buffer, in order. A read of
    the same length that holds a DTMF digit between audio messages goes to the parser: the digit reaches the
    binder and the audio around it is whole. (16 kHz: the echo sends back exactly what it was given.)"""
    header = HEADER.pack(SLIN16, 640)
    payloads = [np.full(320, 1000 * (n + 1), "<i2").tobytes() for n in range(8)]
    messages = [header + payload for payload in payloads]
    digit = HEADER.pack(DTMF, 1) + b"5"
    with_digit = messages[2] + digit + messages[3]
    chunks = [messages[0] + messages[1], with_digit[:1286], with_digit[1286:] + messages[4], b"".join(messages[5:])]
    assert len(chunks[1]) == 2 * len(messages[0]) and chunks[1][643:646] != header

    heard, digits = through_the_poller(chunks)
    assert heard == payloads
    assert digits == ["5"]


def test_dtmf_reaches_the_binder_between_audio(polled: bool) -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        async with serving(binder, polled) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN)
            await client.send_audio(bytes(640))
            for digit in "12#":
                client.send_dtmf(digit)
            await client.send_audio(bytes(320))
            client.send_dtmf("D")
            await until(lambda: len(binder.digits) == 4)
            await client.hang_up()
        assert binder.digits == [(KNOWN, "1"), (KNOWN, "2"), (KNOWN, "#"), (KNOWN, "D")]

    run(scenario)


def test_asterisk_closing_detaches_the_call_once(polled: bool) -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        async with serving(binder, polled) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN)
            await until(lambda: KNOWN in binder.attached)
            assert server.active == 1
            await client.hang_up()
            await until(lambda: server.active == 0)
            assert binder.detached_calls == [KNOWN]
            assert (server.connections, server.rejected) == (1, 0)

    run(scenario)


def test_gateway_close_sends_hangup_then_closes_and_does_not_detach(polled: bool) -> None:
    async def scenario() -> None:
        binder = FakeBinder(echo=True)
        async with serving(binder, polled) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN, SLIN16)
            await client.send_audio(bytes(640 * 5))
            binder.attached[KNOWN].close()
            await client.wait_closed()
            await until(lambda: server.active == 0)
        assert client.kinds()[-1] == 0x00
        assert set(client.kinds()[:-1]) <= {SLIN, SLIN16}
        assert client.received[-1].payload == b""
        assert (client.eof_at is not None, client.after_end, client.violation) == (True, b"", None)
        assert binder.detached_calls == []

    run(scenario)


def test_stop_hangs_up_every_connection() -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        server = AudioSocketServer("127.0.0.1", 0, binder)
        await server.start()
        clients = [await AsteriskAudioSocket.connect(server.port, KNOWN) for _ in range(3)]
        await until(lambda: server.active == 3)
        await asyncio.wait_for(server.stop(), 2)
        for client in clients:
            await client.wait_closed()
            assert client.kinds() == [0x00] and client.eof_at is not None
        assert binder.detached_calls == []

    run(scenario)


def test_error_message_from_asterisk_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture, polled: bool
) -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        async with serving(binder, polled) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN)
            client.writer.write(b"\xff\x00\x01\x02")
            client.send_dtmf("7")
            await until(lambda: binder.digits == [(KNOWN, "7")])
            await client.hang_up()

    with caplog.at_level(logging.WARNING, logger="fastagi.audiosocket"):
        run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Asterisk reports an error (02)" in warning for warning in warnings), warnings


def test_silence_both_ways_is_dropped_after_the_idle_timeout(polled: bool) -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        async with serving(binder, polled, idle_timeout=SHORT_TIMEOUT) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN)
            await client.wait_closed(timeout=2)
            assert client.kinds() == [0x00]
            assert binder.detached_calls == [KNOWN]
            assert server.rejected == 1

    run(scenario)


def test_a_caller_who_says_nothing_is_kept_while_the_gateway_talks(polled: bool) -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        async with serving(binder, polled, idle_timeout=SHORT_TIMEOUT) as server:
            client = await AsteriskAudioSocket.connect(server.port, KNOWN)
            await until(lambda: KNOWN in binder.attached)
            conn = binder.attached[KNOWN]
            for _ in range(3 * int(SHORT_TIMEOUT / 0.02)):
                conn.write_frame(bytes(FRAME_BYTES))
                await asyncio.sleep(0.02)
            assert server.active == 1 and binder.detached_calls == []
            await client.hang_up()

    run(scenario)


def test_a_peer_that_does_not_read_costs_dropped_frames_not_memory(polled: bool) -> None:
    async def scenario() -> None:
        binder = FakeBinder()
        async with serving(binder, polled) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x01\x00\x10" + KNOWN.bytes)
            await until(lambda: KNOWN in binder.attached)
            conn = binder.attached[KNOWN]
            assert (conn._polled is not None) is polled
            for _ in range(200):
                for _ in range(100):
                    conn.write_frame(bytes(FRAME_BYTES))
                await asyncio.sleep(0)
            counters = conn.counters
            assert counters.dropped_out > 0
            assert counters.frames_out + counters.dropped_out == 20000
            unsent = conn._polled.backlog if conn._polled else conn._transport.get_write_buffer_size()
            assert unsent <= 11 * 323
            writer.close()

    run(scenario)


GOOD_UUID_MESSAGE = b"\x01\x00\x10" + KNOWN.bytes
BAD_PEERS = {  # what the peer writes (one write each, 50 ms apart), and the reason logged
    "audio before the UUID": ([b"\x10\x01\x40" + bytes(320)], "first message is AUDIO_8K"),
    "short UUID": ([b"\x01\x00\x0f" + bytes(15)], "UUID message of 15 bytes"),
    "unknown UUID": ([b"\x01\x00\x10" + UNKNOWN.bytes], f"({UNKNOWN}) dropped: no call accepts this UUID"),
    "an HTTP request": ([b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], "unknown message kind 0x47"),
    "garbage kind after the UUID": ([GOOD_UUID_MESSAGE, b"\x42\x00\x01x"], "unknown message kind 0x42"),
    "oversized length": ([GOOD_UUID_MESSAGE, b"\x10\xff\xff"], "AUDIO_8K message of 65535 bytes"),
    "bad DTMF digit": ([GOOD_UUID_MESSAGE, b"\x03\x00\x01x"], "DTMF digit"),
    "silent peer": ([], f"no UUID within {SHORT_TIMEOUT:g} s"),
    "half a header, then nothing": ([b"\x01\x00"], f"no UUID within {SHORT_TIMEOUT:g} s"),
    "half a UUID, then nothing": ([b"\x01\x00\x10" + KNOWN.bytes[:8]], f"no UUID within {SHORT_TIMEOUT:g} s"),
}


async def bad_peer(port: int, writes: list[bytes]) -> tuple[bytes, str]:
    """Writes, keeps the socket open, returns what came back until EOF and its own address."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host, own_port = writer.get_extra_info("sockname")[:2]
    for data in writes:
        writer.write(data)
        await asyncio.sleep(0.05)
    try:
        return await asyncio.wait_for(reader.read(), 2), f"{host}:{own_port}"
    finally:
        writer.close()


@pytest.mark.parametrize("case", BAD_PEERS)
def test_bad_peer_is_dropped_with_a_warning_and_the_next_caller_is_served(
    case: str, caplog: pytest.LogCaptureFixture, polled: bool
) -> None:
    writes, reason = BAD_PEERS[case]
    peer = ""

    async def scenario() -> None:
        nonlocal peer
        binder = FakeBinder()
        monitor = LagMonitor()
        async with serving(binder, polled, uuid_timeout=SHORT_TIMEOUT) as server:
            answer, peer = await bad_peer(server.port, writes)
            assert answer == HANGUP_MESSAGE
            await until(lambda: server.active == 0)
            assert (server.connections, server.rejected) == (1, 1)
            assert binder.detached_calls == ([KNOWN] if GOOD_UUID_MESSAGE in writes else [])
            assert binder.refused == ([UNKNOWN] if case == "unknown UUID" else [])

            good = await AsteriskAudioSocket.connect(server.port, KNOWN)
            good.send_dtmf("5")
            await until(lambda: binder.digits == [(KNOWN, "5")])
            await good.hang_up()
        assert await monitor.stop() < 0.100

    with caplog.at_level(logging.WARNING, logger="fastagi.audiosocket"):
        run(scenario)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and peer in warnings[0] and reason in warnings[0], warnings


def test_all_bad_peers_at_once_leave_a_good_call_intact() -> None:
    async def scenario() -> None:
        binder = FakeBinder(echo=True)
        monitor = LagMonitor()
        async with serving(binder, uuid_timeout=SHORT_TIMEOUT) as server:
            good = await AsteriskAudioSocket.connect(server.port, KNOWN, SLIN16)
            # (those that open with the good UUID would take its call over)
            openings = [writes for writes, _ in BAD_PEERS.values() if GOOD_UUID_MESSAGE not in writes]
            bad = [bad_peer(server.port, writes) for writes in openings]
            sending = asyncio.create_task(good.send_audio(tone_burst(16000, 0.1, 0.7)))
            answers = await asyncio.gather(*bad)
            await sending
            await asyncio.sleep(0.1)
            await good.hang_up()
            assert [answer for answer, _ in answers] == [HANGUP_MESSAGE] * len(bad)
            assert server.rejected == len(bad)

        samples = np.frombuffer(good.audio(), dtype="<i2").astype(float)
        onset = int(np.argmax(np.abs(samples) > 4000))
        tone = samples[onset + 1600 : onset + 1600 + 8000]
        spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)))) ** 2
        freqs = np.fft.rfftfreq(len(tone), 1 / 16000)
        assert spectrum[np.abs(freqs - 440) < 30].sum() > 0.95 * spectrum.sum()
        assert await monitor.stop() < 0.100

    run(scenario)


def test_a_peer_outside_permit_is_refused_before_anything_is_read(caplog: pytest.LogCaptureFixture) -> None:
    """127.0.0.2 knows a live call's UUID: without permit it would take over the call's audio."""
    binder = FakeBinder()

    async def scenario() -> tuple[int, int]:
        async with serving(binder) as server:
            reader, writer = await connect_from("127.0.0.2", server.port)
            writer.write(b"\x01\x00\x10" + KNOWN.bytes + b"\x10\x01\x40" + bytes(320))
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass  # the refusal closed a socket with our bytes unread in it
            writer.close()
            return server.refused, server.connections

    with caplog.at_level(logging.INFO):
        assert run(scenario) == (1, 0)  # refused, and no session made
    assert binder.attached == {} and binder.refused == []  # the UUID never reached the call side
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "127.0.0.2" in r.getMessage()] == [
        ("WARNING", "refused AudioSocket connection from 127.0.0.2: not in permit")]


def test_a_peer_inside_permit_attaches_from_another_address() -> None:
    binder = FakeBinder()

    async def scenario() -> str:
        async with serving(binder, permit="127.0.0.0/8") as server:
            reader, writer = await connect_from("127.0.0.2", server.port)
            writer.write(b"\x01\x00\x10" + KNOWN.bytes)
            await until(lambda: KNOWN in binder.attached)
            writer.close()
            assert server.refused == 0
            return binder.attached[KNOWN].peer

    assert run(scenario).startswith("127.0.0.2:")
