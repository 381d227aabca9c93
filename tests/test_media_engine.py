"""Rooms: who hears whom, with real WAV files in and out, driven tick by tick."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import wave
from pathlib import Path
from typing import Any, Coroutine, Iterator

import numpy as np
import pytest
import uvloop

from fastagi.media.engine import LATE_AFTER, ROOMS_PER_STEP, SLICE_SECONDS, MediaEngine, Pacer, mix_minus
from fastagi.media.errors import MediaFileError
from fastagi.model.audio import ENGINE_RATE, FRAME_BYTES, FRAME_SAMPLES, SILENCE, EchoPort, SilentPort
from fastagi.media.ports import LocalPort, PlaybackPort
from fastagi.media.wav import WavPlayer, WavRecorder


def write_tone(path: Path, freq: float, seconds: float) -> np.ndarray:
    """A 16 kHz 16-bit mono tone WAV, written with the standard library; returns its samples."""
    count = int(seconds * ENGINE_RATE)
    phase = 2 * np.pi * freq * np.arange(count) / ENGINE_RATE
    samples = (0.4 * 32767 * np.sin(phase)).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(ENGINE_RATE)
        writer.writeframes(samples.tobytes())
    return samples


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(rate, samples) of a 16-bit mono WAV, read with the standard library."""
    with wave.open(str(path)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        return reader.getframerate(), np.frombuffer(reader.readframes(reader.getnframes()), "<i2")


def spectrum_at(samples: np.ndarray, rate: int, *freqs: float) -> list[float]:
    """Spectral magnitude of `samples` at each of `freqs` (1 s or more gives 1 Hz bins)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return [float(spectrum[round(freq * len(samples) / rate)]) for freq in freqs]


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def run(engine: MediaEngine, ticks: int) -> None:
    for _ in range(ticks):
        engine.tick()


def busy_for(seconds: float) -> None:
    """Hold the CPU (and the event loop) for `seconds`, as a slow step of a tick does."""
    busy_until = time.perf_counter() + seconds
    while time.perf_counter() < busy_until:
        pass


def run_on(event_loop: str, scenario: Coroutine[Any, Any, None]) -> None:
    """Run `scenario` on asyncio's own loop or on uvloop's."""
    factory = uvloop.new_event_loop if event_loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(scenario)


def frame(value: int) -> bytes:
    return np.full(FRAME_SAMPLES, value, "<i2").tobytes()


class Collector:
    """A sink that keeps every frame it hears."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


# ---------------------------------------------------------------- mixing


def test_two_parties_hear_each_other_as_they_are():
    assert mix_minus([frame(1), frame(2)]) == [frame(2), frame(1)]


def test_alone_in_a_room_is_silence():
    assert mix_minus([frame(1000)]) == [SILENCE]


def test_mix_is_the_sum_of_the_others_saturated():
    # the sum of all is -20005; each hears that minus its own frame
    heard = mix_minus([frame(20000), frame(20000), frame(-5), frame(-30000), frame(-30000)])
    assert heard == [frame(-32768), frame(-32768), frame(-20000), frame(9995), frame(9995)]
    assert mix_minus([frame(30000)] * 3) == [frame(32767)] * 3


# ---------------------------------------------------------------- calls


@pytest.mark.parametrize("rate", [8000, 16000])
def test_tone_played_to_echo_comes_back_into_the_recording(tmp_path, rate):
    tone = write_tone(tmp_path / "tone.wav", 440, 2.0)
    engine = MediaEngine()
    room = engine.create_room()
    local = LocalPort()
    local.play(tmp_path / "tone.wav")
    recorder = WavRecorder(tmp_path / "heard.wav", rate)
    local.add_sink(recorder)
    room.add(local)
    room.add(EchoPort())
    ticks = 100
    run(engine, ticks)
    recorder.close()

    got_rate, heard = read_wav(tmp_path / "heard.wav")
    assert got_rate == rate
    assert len(heard) / rate == pytest.approx(ticks * 0.020, abs=0.040)
    assert dominant_hz(heard, rate) == pytest.approx(440, abs=2)
    if rate == ENGINE_RATE:  # the echo is exactly one frame late
        delayed = np.concatenate([np.zeros(FRAME_SAMPLES, "<i2"), tone[:-FRAME_SAMPLES]])
        assert np.array_equal(heard, delayed)


def test_account_to_account_call(tmp_path):
    tone = write_tone(tmp_path / "tone.wav", 440, 1.0)
    engine = MediaEngine()
    room = engine.create_room()
    alice, bob = LocalPort(), LocalPort()
    alice_rec = WavRecorder(tmp_path / "alice.wav")
    bob_rec = WavRecorder(tmp_path / "bob.wav")
    alice.add_sink(alice_rec)
    bob.add_sink(bob_rec)
    room.add(alice)
    room.add(bob)
    alice.play(tmp_path / "tone.wav")
    run(engine, 50)
    alice_rec.close()
    bob_rec.close()

    assert np.array_equal(read_wav(tmp_path / "bob.wav")[1], tone)
    alice_heard = read_wav(tmp_path / "alice.wav")[1]
    assert len(alice_heard) == len(tone) and not alice_heard.any()


def test_three_party_conference_by_merge(tmp_path):
    write_tone(tmp_path / "440.wav", 440, 1.0)
    write_tone(tmp_path / "1000.wav", 1000, 1.0)
    engine = MediaEngine()
    first, second = engine.create_room(), engine.create_room()
    a, b, c = LocalPort(), LocalPort(), LocalPort()
    first.add(a)
    first.add(b)
    second.add(c)
    second.add(EchoPort())
    second.remove(second.ports[1])
    first.merge(second)
    assert engine.rooms == 1 and second.closed and first.ports == (a, b, c)

    collectors = {port: Collector() for port in (a, b, c)}
    for port, collector in collectors.items():
        port.add_sink(collector)
    a.play(tmp_path / "440.wav")
    b.play(tmp_path / "1000.wav")
    run(engine, 50)

    def heard(port: LocalPort) -> list[float]:
        samples = np.frombuffer(b"".join(collectors[port].frames), "<i2")
        return spectrum_at(samples, ENGINE_RATE, 440, 1000)

    c_440, c_1000 = heard(c)
    assert c_440 == pytest.approx(c_1000, rel=0.05)
    a_440, a_1000 = heard(a)
    assert a_1000 == pytest.approx(c_1000, rel=0.01) and a_440 < 0.01 * a_1000
    b_440, b_1000 = heard(b)
    assert b_440 == pytest.approx(c_440, rel=0.01) and b_1000 < 0.01 * b_440


def test_playing_a_new_file_replaces_the_old_from_its_start(tmp_path):
    write_tone(tmp_path / "440.wav", 440, 1.0)
    second = write_tone(tmp_path / "1000.wav", 1000, 0.1)
    engine = MediaEngine()
    room = engine.create_room()
    local, listener = LocalPort(), LocalPort()
    heard = Collector()
    listener.add_sink(heard)
    room.add(local)
    room.add(listener)
    local.play(tmp_path / "440.wav")
    run(engine, 3)
    local.play(tmp_path / "1000.wav")
    run(engine, 7)
    assert b"".join(heard.frames[3:8]) == second.tobytes()
    assert heard.frames[8:] == [SILENCE, SILENCE]


def test_playing_a_bad_file_keeps_the_current_source(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    local = LocalPort()
    player = WavPlayer(np.ones(FRAME_SAMPLES, np.int16))
    local.set_source(player)
    with pytest.raises(MediaFileError):
        local.play(tmp_path / "bad.wav")
    assert local.source is player


def test_sinks_come_and_go():
    engine = MediaEngine()
    room = engine.create_room()
    local, other = LocalPort(), LocalPort()
    said = np.arange(3 * FRAME_SAMPLES, dtype=np.int16).tobytes()
    other.set_source(WavPlayer(np.frombuffer(said, np.int16)))
    first, second = Collector(), Collector()
    local.add_sink(first)
    room.add(local)
    room.add(other)
    engine.tick()
    local.add_sink(second)
    engine.tick()
    local.remove_sink(first)
    engine.tick()
    assert b"".join(first.frames) == said[: 2 * FRAME_BYTES]
    assert b"".join(second.frames) == said[FRAME_BYTES:]
    with pytest.raises(ValueError):
        local.remove_sink(first)
    with pytest.raises(ValueError):
        local.add_sink(second)


def test_greeting_then_silence_and_a_silent_party():
    engine = MediaEngine()
    room = engine.create_room()
    greeting = PlaybackPort(WavPlayer(np.full(FRAME_SAMPLES, 7, np.int16)))
    local = LocalPort()
    heard = Collector()
    local.add_sink(heard)
    for port in (greeting, SilentPort(), local):
        room.add(port)
    run(engine, 3)
    assert heard.frames == [frame(7), SILENCE, SILENCE]
    assert greeting.source.finished


# ---------------------------------------------------------------- rooms


def test_a_port_is_in_one_room_at_a_time():
    engine = MediaEngine()
    first, second = engine.create_room(), engine.create_room()
    port = EchoPort()
    first.add(port)
    assert engine.room_of(port) is first
    with pytest.raises(ValueError):
        first.add(port)
    with pytest.raises(ValueError):
        second.add(port)
    with pytest.raises(ValueError):
        second.remove(port)
    first.remove(port)
    second.add(port)
    assert engine.room_of(port) is second and first.ports == ()


def test_closing_a_room_releases_its_ports():
    engine = MediaEngine()
    room = engine.create_room()
    port = EchoPort()
    room.add(port)
    room.close()
    room.close()
    assert engine.rooms == 0 and engine.room_of(port) is None and room.ports == ()
    with pytest.raises(ValueError):
        room.add(EchoPort())
    engine.create_room().add(port)


def test_merge_refuses_itself_and_closed_rooms():
    engine = MediaEngine()
    room, closed = engine.create_room(), engine.create_room()
    closed.close()
    with pytest.raises(ValueError):
        room.merge(room)
    with pytest.raises(ValueError):
        room.merge(closed)
    with pytest.raises(ValueError):
        closed.merge(room)
    assert engine.rooms == 1


class BrokenPort(SilentPort):
    def pull(self) -> bytes:
        raise RuntimeError("device gone")


def test_a_failing_room_does_not_stop_the_others(caplog):
    engine = MediaEngine()
    broken = engine.create_room()
    broken.add(BrokenPort())
    good = engine.create_room()
    local, echo = LocalPort(), EchoPort()
    heard = Collector()
    local.add_sink(heard)
    local.set_source(WavPlayer(np.full(3 * FRAME_SAMPLES, 5, np.int16)))
    good.add(local)
    good.add(echo)
    with caplog.at_level(logging.ERROR, logger="fastagi.media.engine"):
        run(engine, 3)
    assert heard.frames == [SILENCE, frame(5), frame(5)]
    assert engine.errors == 3 and engine.ticks == 3
    assert len(caplog.records) == 1


def test_tick_hooks_run_around_every_room_and_a_failing_one_is_logged_once(caplog):
    engine = MediaEngine()
    order: list[str] = []

    class Party(SilentPort):
        def pull(self) -> bytes:
            order.append("room")
            return SILENCE

    def broken() -> None:
        raise RuntimeError("lane gone")

    engine.create_room().add(Party())
    engine.add_tick_hooks(lambda: order.append("before"), lambda: order.append("after"))
    engine.add_tick_hooks(broken, lambda: order.append("after, second"))
    with caplog.at_level(logging.ERROR, logger="fastagi.media.engine"):
        run(engine, 2)
    assert order == ["before", "room", "after", "after, second"] * 2
    assert engine.errors == 2 and len(caplog.records) == 1


def test_the_clock_hands_the_loop_back_within_a_long_tick_and_still_runs_every_step() -> None:
    """A tick of 12 steps of half a slice each lets another task run after every slice's worth, not after the whole tick."""
    order: list[str] = []

    def slow_steps() -> Iterator[None]:
        for step in range(12):
            busy_for(SLICE_SECONDS / 2)
            order.append(f"step {step}")
            yield

    async def scenario() -> None:
        engine = MediaEngine()
        engine.add_tick_hooks(slow_steps, lambda: None)
        engine.start()
        while "step 11" not in order:
            order.append("other")
            await asyncio.sleep(0)
        await engine.stop()

    asyncio.run(scenario())
    tick = order[order.index("step 0") : order.index("step 11") + 1]
    assert [entry for entry in tick if entry != "other"] == [f"step {n}" for n in range(12)]
    runs = "".join("s" if entry != "other" else "o" for entry in tick).split("o")
    assert max(len(run) for run in runs) <= 3  # steps between two turns of the loop: a slice's worth and one more


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_a_task_woken_by_what_the_loop_found_takes_its_step_before_the_tick_goes_on(event_loop: str) -> None:
    """A FastAGI session's answer arrives during a long tick: at the next hand-back the loop reads it, and the
    session it wakes writes its next command then, not a slice later (on uvloop too, whose queue the clock
    cannot see)."""
    order: list[str] = []

    def slow_steps(peer: socket.socket) -> Iterator[None]:
        for step in range(6):
            busy_for(SLICE_SECONDS)
            if step == 1:
                peer.send(b"200 result=1\n")
            order.append(f"step {step}")
            yield

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        answered = loop.create_future()

        def readable() -> None:  # as a protocol's data_received: the line read, the session's wait over
            loop.remove_reader(ours.fileno())
            answered.set_result(ours.recv(100))

        async def session() -> None:
            await answered
            order.append("session")

        loop.add_reader(ours.fileno(), readable)
        waiting = loop.create_task(session())
        engine = MediaEngine()
        engine.add_tick_hooks(lambda: slow_steps(peer), lambda: None)
        engine.start()
        await waiting
        while "step 5" not in order:
            await asyncio.sleep(0.001)
        await engine.stop()
        ours.close()
        peer.close()

    run_on(event_loop, scenario())
    assert order.index("session") == order.index("step 1") + 1


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_a_fastagi_like_connection_is_accepted_read_and_answered_within_one_hand_back(event_loop: str) -> None:
    """Accepting a connection, reading its request and answering from a task takes the loop several turns, each
    queued behind the last: a client that connects during a long tick is answered before the tick's next step."""
    order: list[str] = []

    def slow_steps(port: int, clients: list[socket.socket]) -> Iterator[None]:
        for step in range(6):
            busy_for(SLICE_SECONDS)
            if step == 1:
                clients.append(socket.create_connection(("127.0.0.1", port)))
                clients[0].sendall(b"agi_request: agi://127.0.0.1/get-profile-balance\n\n")
            order.append(f"step {step}")
            yield

    class Answering(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            asyncio.get_running_loop().create_task(self.answer())

        async def answer(self) -> None:
            order.append("answered")
            self.transport.write(b"SET VARIABLE SKYPE_STATUS \"OK\"\n")  # type: ignore[attr-defined]

    async def scenario() -> None:
        server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", 0)
        clients: list[socket.socket] = []
        engine = MediaEngine()
        engine.add_tick_hooks(lambda: slow_steps(server.sockets[0].getsockname()[1], clients), lambda: None)
        engine.start()
        while "step 5" not in order:
            await asyncio.sleep(0.001)
        await engine.stop()
        server.close()
        for client in clients:
            client.close()

    run_on(event_loop, scenario())
    assert order.index("answered") == order.index("step 1") + 1


def test_a_room_closed_while_the_loop_runs_within_a_tick_is_heard_no_more() -> None:
    """The clock may hand the loop back between rooms: a room a FastAGI session closes meanwhile is not ticked,
    and one opened meanwhile waits for the next tick."""
    engine = MediaEngine()
    pulled: list[int] = []

    class Party(SilentPort):
        def __init__(self, number: int) -> None:
            self.number = number

        def pull(self) -> bytes:
            pulled.append(self.number)
            return SILENCE

    rooms = [engine.create_room() for _ in range(2 * ROOMS_PER_STEP)]
    for number, room in enumerate(rooms):
        room.add(Party(number))
    steps = engine._steps()
    next(steps)  # the loop may run here
    assert pulled == list(range(ROOMS_PER_STEP - 1))
    rooms[ROOMS_PER_STEP - 1].close()
    rooms[ROOMS_PER_STEP + 10].close()
    engine.create_room().add(Party(-1))
    assert list(steps) == [None]  # the next chance to hand the loop back
    expected = [n for n in range(2 * ROOMS_PER_STEP) if n not in (ROOMS_PER_STEP - 1, ROOMS_PER_STEP + 10)]
    assert pulled == expected
    pulled.clear()
    engine.tick()
    assert pulled == [*expected, -1]


# ---------------------------------------------------------------- the clock


def test_pacer_keeps_absolute_deadlines():
    pacer = Pacer(100.0)
    assert pacer.deadline == pytest.approx(100.02)
    assert pacer.arrive(100.0205) == (False, 0)
    assert pacer.deadline == pytest.approx(100.04)
    assert pacer.arrive(100.04 + LATE_AFTER + 0.001) == (True, 0)
    assert pacer.deadline == pytest.approx(100.06)  # a late tick does not shift the rest


def test_pacer_catches_up_a_little_by_running_back_to_back():
    pacer = Pacer(0.0)
    assert pacer.arrive(0.02 + 0.045) == (True, 0)
    assert pacer.arrive(0.02 + 0.045) == (True, 0)
    assert pacer.arrive(0.02 + 0.045) == (False, 0)
    assert pacer.deadline == pytest.approx(0.08)


def test_pacer_skips_ahead_when_far_behind():
    pacer = Pacer(0.0)
    assert pacer.arrive(0.02 + 0.505) == (False, 25)  # 25 ticks missed, this one 5 ms late
    assert pacer.deadline == pytest.approx(0.54)


def test_real_clock_moves_audio():
    async def scenario() -> tuple[MediaEngine, Collector]:
        engine = MediaEngine()
        room = engine.create_room()
        local = LocalPort()
        heard = Collector()
        local.add_sink(heard)
        local.set_source(WavPlayer(np.full(ENGINE_RATE, 9, np.int16)))
        room.add(local)
        room.add(EchoPort())
        engine.start()
        await asyncio.sleep(0.5)
        await engine.stop()
        ticks = engine.ticks
        await asyncio.sleep(0.05)
        assert engine.ticks == ticks and not engine.running
        return engine, heard

    engine, heard = asyncio.run(scenario())
    assert 15 <= engine.ticks <= 30
    assert len(heard.frames) == engine.ticks
    assert heard.frames[0] == SILENCE and set(heard.frames[1:]) == {frame(9)}
