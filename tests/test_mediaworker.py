"""The media worker process on its own: two calls of it set up against each other through Jingle,
DTLS-SRTP up, a tone across at its frequency and level, and RFC 4733 digits both ways."""

from __future__ import annotations

import asyncio
from xml.etree import ElementTree

import numpy as np
import pytest

from fastagi.model.audio import ENGINE_RATE, FRAME_SAMPLES
from fastagi.network.xmpp import jingle, sdp
from fastagi.network.xmpp.mediaclient import MediaWorker
from fastagi.network.xmpp.telephone_event import decode_event


def tone(freq: float, frames: int, amplitude: float = 8000.0) -> list[bytes]:
    n = np.arange(frames * FRAME_SAMPLES)
    samples = (amplitude * np.sin(2 * np.pi * freq * n / ENGINE_RATE)).astype("<i2")
    return [samples[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes() for i in range(frames)]


def through_jingle(description: str, offer: bool, telephone_events: bool = True) -> str:
    """An SDP as it comes out of the other end of a Jingle session-initiate or session-accept."""
    session = sdp.parse(description)
    if telephone_events and offer:
        session.audio.codecs += [sdp.Codec(101, "telephone-event", 8000), sdp.Codec(110, "telephone-event", 48000)]
    stanza = jingle.jingle("session-initiate" if offer else "session-accept", "s", children=jingle.contents(session))
    return sdp.write(jingle.to_session(ElementTree.fromstring(ElementTree.tostring(stanza)), offer))


def level_at(pcm: bytes, freq: float) -> tuple[float, float]:
    """(frequency of the strongest bin, RMS level in dBFS) of the audio."""
    samples = np.frombuffer(pcm, "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    dominant = float(np.argmax(spectrum)) * ENGINE_RATE / len(samples)
    rms = float(np.sqrt(np.mean(samples ** 2))) or 1e-9
    return dominant, 20 * np.log10(rms / 32768)


async def engine_tick(worker: MediaWorker, *calls: int) -> None:
    """A tick of silence into each call, as the gateway's media engine gives one every 20 ms: the worker sends
    at that pace."""
    for call in calls:
        worker.port(call).push(bytes(2 * FRAME_SAMPLES))
    await asyncio.sleep(0.02)


@pytest.mark.parametrize("codecs", ["opus", "PCMU"])
def test_two_calls_of_the_worker_carry_a_tone_and_digits(codecs: str) -> None:
    async def scenario() -> None:
        worker = MediaWorker()
        await worker.start()
        try:
            states: dict[str, list[str]] = {"a": [], "b": []}
            digits: dict[str, list[str]] = {"a": [], "b": []}
            a, a_offer = worker.open(lambda s, r: states["a"].append(s), digits["a"].append, [], 20.0)
            offer = await asyncio.wait_for(a_offer, 10)
            if codecs == "PCMU":  # the other side offers G.711 only
                session = sdp.parse(offer)
                session.audio.codecs = [c for c in session.audio.codecs if c.name == "PCMU"]
                offer = sdp.write(session)
            b, b_answer = worker.open(lambda s, r: states["b"].append(s), digits["b"].append, [], 20.0,
                                      offer=through_jingle(offer, offer=True))
            answer = await asyncio.wait_for(b_answer, 10)
            answer_session = sdp.parse(answer)
            answer_session.audio.codecs += [sdp.Codec(101 if codecs == "PCMU" else 110, "telephone-event",
                                                      8000 if codecs == "PCMU" else 48000)]
            worker.accepted(a, through_jingle(sdp.write(answer_session), offer=False))
            assert sdp.parse(answer).audio.codecs[0].name == codecs
            for _ in range(250):
                if "connected" in states["a"] and "connected" in states["b"]:
                    break
                await asyncio.sleep(0.02)
            assert "connected" in states["a"] and "connected" in states["b"]

            sent = tone(440, 100)
            heard: list[bytes] = []
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n, frame in enumerate(sent):  # the media engine's clock: a frame each 20 ms each way
                worker.port(a).push(frame)
                worker.port(b).push(bytes(len(frame)))
                heard.append(worker.port(b).pull())
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
            received = b"".join(heard[-50:])
            assert sum(1 for frame in heard[-50:] if not any(frame)) <= 2  # once flowing, it does not break up
            frequency, level = level_at(received, 440)
            sent_level = level_at(b"".join(sent), 440)[1]
            assert abs(frequency - 440) < 10
            assert abs(level - sent_level) < 3  # dB: both codecs carry the tone at its level

            packets: list[dict] = []
            worker.trace(b, packets.append)
            worker.dtmf(a, "1#")
            worker.dtmf(b, "9")
            for _ in range(100):
                await engine_tick(worker, a, b)
                if digits["b"] == ["1", "#"] and digits["a"] == ["9"]:
                    break
            assert (digits["b"], digits["a"]) == (["1", "#"], ["9"])
            for _ in range(15):  # the engine's clock goes on: the end packets go out with its frames
                await engine_tick(worker, a, b)
            train = [(p["marker"], p["timestamp"], decode_event(bytes.fromhex(p["payload"]))) for p in packets]
            rate = 48000 if codecs == "opus" else 8000
            step = rate // 50
            first = [t for t in train if t[2][0] == 1]
            assert {(p["pt"]) for p in packets} == {110 if codecs == "opus" else 101}
            assert [(marker, event, end, duration) for marker, _, (event, end, _v, duration) in first] == [
                (True, 1, False, step), (False, 1, False, 2 * step), (False, 1, False, 3 * step),
                (False, 1, False, 4 * step), (False, 1, True, 5 * step), (False, 1, True, 5 * step),
                (False, 1, True, 5 * step)]  # 100 ms, three end packets, as RFC 4733 section 2.5.1.4
            assert len({timestamp for _, timestamp, _ in first}) == 1  # one event, one timestamp
            assert [t[2][0] for t in train if t[2][1]].count(11) == 3  # '#' ended too
            sequences = [p["sequence"] for p in packets]
            assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
            worker.close_call(a)
            worker.close_call(b)
        finally:
            await worker.close()

    asyncio.run(asyncio.wait_for(scenario(), 40))
