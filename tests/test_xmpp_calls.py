"""Voice calls between XMPP users through a real Prosody: JMI, Jingle, DTLS-SRTP, audio checked by its content."""

from __future__ import annotations

import asyncio
import wave
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from conftest import Dialplan, Recorder, run, running_gateway, unique, xmpp_account
from fastagi.app import Gateway
from xmpp.server import Prosody


def write_tone(path: Path, freq: float, seconds: float, rate: int = 16000, amplitude: float = 0.3) -> None:
    n = np.arange(int(seconds * rate))
    samples = (amplitude * 32767 * np.sin(2 * np.pi * freq * n / rate)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path)) as reader:
        return reader.getframerate(), np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(float)


def dominant(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def rms_dbfs(samples: np.ndarray) -> float:
    return float(20 * np.log10(max(np.sqrt(np.mean(samples ** 2)), 1e-9) / 32768))


@asynccontextmanager
async def two_accounts(tmp_path: Path, server: Prosody) -> AsyncIterator[tuple[Gateway, Dialplan, Recorder, str, str]]:
    """One gateway with alice and bob, both XMPP accounts on `server`, online."""
    alice, bob = server.register(unique("alice"), "secret"), server.register(unique("bob"), "secret")
    body = xmpp_account(server, "alice", alice) + xmpp_account(server, "bob", bob)
    async with running_gateway(tmp_path, body, "record_rate = 16000\nring_timeout = 5") as gw:
        rec = Recorder(gw.bus)
        for account in ("alice", "bob"):
            await rec.wait(lambda e, a=account: e.kind == "AccountStatus" and e.account == a
                           and e.fields["Status"] == "ONLINE", 10)
        yield gw, Dialplan(gw.agi.port), rec, alice, bob


async def ringing(rec: Recorder, account: str) -> str:
    event = await rec.wait(lambda e: e.kind == "CallStatus" and e.account == account
                           and e.fields["Direction"] == "incoming" and e.fields["Status"] == "RINGING", 10)
    return event.fields["CallID"]


def test_two_xmpp_accounts_call_each_other_with_a_tone_both_ways(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_accounts(tmp_path, prosody) as (gw, dial, rec, alice, bob):
            write_tone(tmp_path / "media" / "a440.wav", 440, 4)
            write_tone(tmp_path / "media" / "b660.wav", 660, 4)
            started = await dial("alice", "call-start", user_name=bob)
            assert started["SKYPE_STATUS"] == "SUCCESS"
            out = started["SKYPE_CALL_ID"]
            incoming = await ringing(rec, "bob")
            await rec.status("alice", out, "RINGING", timeout=10)
            assert rec.events[[e.fields.get("CallID") for e in rec.events].index(incoming)].fields["Partner"] == alice
            assert (await dial("bob", "call-answer", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("alice", out, "INPROGRESS", timeout=10)
            for account, call, play, record in (("alice", out, "a440.wav", "alice-heard.wav"),
                                                ("bob", incoming, "b660.wav", "bob-heard.wav")):
                assert (await dial(account, "call-set-output-file", call_id=call, file_name=record))["SKYPE_STATUS"] == "SUCCESS"
                assert (await dial(account, "call-set-input-file", call_id=call, file_name=play))["SKYPE_STATUS"] == "SUCCESS"
            await asyncio.sleep(3)
            assert (await dial("alice", "call-hangup", call_id=out))["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("bob", incoming, "FINISHED", timeout=10)
            assert rec.statuses("alice", out) == ["ROUTING", "RINGING", "INPROGRESS", "FINISHED"]
            assert rec.statuses("bob", incoming) == ["RINGING", "INPROGRESS", "FINISHED"]
        for name, freq in (("bob-heard.wav", 440), ("alice-heard.wav", 660)):
            rate, heard = read_wav(tmp_path / "media" / name)
            tail = heard[int(1.0 * rate):int(2.5 * rate)]  # once the tone flows, before the hang-up
            assert abs(dominant(tail, rate) - freq) < 5, name
            assert abs(rms_dbfs(tail) - rms_dbfs(0.3 * 32767 * np.sin(np.linspace(0, 1000, 10000)))) < 3, name
    run(body())


def test_refused_cancelled_unanswered_and_unknown_calls(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_accounts(tmp_path, prosody) as (gw, dial, rec, alice, bob):
            refused = (await dial("alice", "call-start", user_name=bob))["SKYPE_CALL_ID"]
            incoming = await ringing(rec, "bob")
            assert (await dial("bob", "call-hangup", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("alice", refused, "REFUSED", timeout=10)
            assert rec.statuses("bob", incoming) == ["RINGING", "REFUSED"]

            cancelled = (await dial("alice", "call-start", user_name=bob))["SKYPE_CALL_ID"]
            incoming = await rec.wait(lambda e: e.kind == "CallStatus" and e.account == "bob"
                                      and e.fields["Status"] == "RINGING" and e.fields["CallID"] != incoming, 10)
            await rec.status("alice", cancelled, "RINGING", timeout=10)
            assert (await dial("alice", "call-hangup", call_id=cancelled))["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("bob", incoming.fields["CallID"], "MISSED", timeout=10)
            assert rec.statuses("alice", cancelled) == ["ROUTING", "RINGING", "CANCELLED"]

            nobody = (await dial("alice", "call-start", user_name=f"{unique('nobody')}@localhost"))["SKYPE_CALL_ID"]
            failed = await rec.status("alice", nobody, "FAILED", timeout=10)
            assert "service-unavailable" in failed.fields["FailureReason"]

            unanswered = (await dial("alice", "call-start", user_name=bob))["SKYPE_CALL_ID"]
            await rec.status("alice", unanswered, "MISSED", timeout=10)  # ring_timeout = 5
            assert gw.manager.calls.live == {}
    run(body())


def test_hold_is_silence_both_ways_and_dtmf_crosses_both_ways(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_accounts(tmp_path, prosody) as (gw, dial, rec, alice, bob):
            write_tone(tmp_path / "media" / "a440.wav", 440, 8)
            out = (await dial("alice", "call-start", user_name=bob))["SKYPE_CALL_ID"]
            incoming = await ringing(rec, "bob")
            await dial("bob", "call-answer", call_id=incoming)
            await rec.status("alice", out, "INPROGRESS", timeout=10)
            await dial("bob", "call-set-output-file", call_id=incoming, file_name="held.wav")
            await dial("alice", "call-set-input-file", call_id=out, file_name="a440.wav")
            await asyncio.sleep(1.5)
            assert (await dial("alice", "call-hold", call_id=out))["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("bob", incoming, "REMOTEHOLD", timeout=10)
            held_at = asyncio.get_running_loop().time()
            await asyncio.sleep(1.5)
            assert (await dial("alice", "call-resume", call_id=out))["SKYPE_STATUS"] == "SUCCESS"
            await rec.status("bob", incoming, "INPROGRESS", timeout=10)
            await asyncio.sleep(1.5)

            assert (await dial("alice", "call-dtmf", call_id=out, code="12%23"))["SKYPE_STATUS"] == "SUCCESS"
            assert (await dial("bob", "call-dtmf", call_id=incoming, code="9"))["SKYPE_STATUS"] == "SUCCESS"
            await rec.wait(lambda e: e.kind == "DTMF" and e.account == "bob" and e.fields["Digit"] == "#", 10)
            await rec.wait(lambda e: e.kind == "DTMF" and e.account == "alice", 10)
            assert [e.fields["Digit"] for e in rec.events if e.kind == "DTMF" and e.account == "bob"] == ["1", "2", "#"]
            assert [e.fields["Digit"] for e in rec.events if e.kind == "DTMF" and e.account == "alice"] == ["9"]
            await dial("alice", "call-hangup", call_id=out)
            await rec.status("bob", incoming, "FINISHED", timeout=10)
            del held_at
        rate, heard = read_wav(tmp_path / "media" / "held.wav")
        second = lambda start: heard[int(start * rate):int((start + 1.0) * rate)]  # noqa: E731
        assert abs(dominant(second(0.4), rate) - 440) < 5 and rms_dbfs(second(0.4)) > -20  # before the hold
        assert rms_dbfs(second(1.9)) < -80  # held: silence (the recording of the held call)
        assert abs(dominant(second(3.4), rate) - 440) < 5 and rms_dbfs(second(3.4)) > -20  # resumed
    run(body())


def test_an_asterisk_channel_bridged_over_audiosocket_talks_to_the_xmpp_user(prosody: Prosody, tmp_path: Path) -> None:
    import uuid

    from doubles.audiosocket_client import SLIN16, AsteriskAudioSocket

    async def body() -> None:
        async with two_accounts(tmp_path, prosody) as (gw, dial, rec, alice, bob):
            started = await dial("alice", "call-start", user_name=bob)
            out, call_uuid = started["SKYPE_CALL_ID"], started["SKYPE_CALL_UUID"]
            incoming = await ringing(rec, "bob")
            await dial("bob", "call-answer", call_id=incoming)
            await rec.status("alice", out, "INPROGRESS", timeout=10)
            await dial("bob", "call-set-output-file", call_id=incoming, file_name="from-asterisk.wav")
            channel = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.UUID(call_uuid), SLIN16)
            n = np.arange(16000 * 3)
            tone = (0.3 * 32767 * np.sin(2 * np.pi * 700 * n / 16000)).astype("<i2").tobytes()
            await channel.send_audio(tone)
            await channel.hang_up()
            await rec.status("alice", out, "FINISHED", timeout=10)
        rate, heard = read_wav(tmp_path / "media" / "from-asterisk.wav")
        middle = heard[int(1.0 * rate):int(2.5 * rate)]
        assert abs(dominant(middle, rate) - 700) < 5 and rms_dbfs(middle) > -20
    run(body())


# -- against an independent peer (slixmpp and aiortc, its own Jingle) -----------------------------
@asynccontextmanager
async def account_and_peer(tmp_path: Path, server: Prosody, **behaviour) -> AsyncIterator:  # type: ignore[no-untyped-def]
    from xmpp.callpeer import call_peer

    alice = server.register(unique("alice"), "secret")
    peer = await call_peer(server, unique("carol"), **behaviour)
    async with running_gateway(tmp_path, xmpp_account(server, "alice", alice), "record_rate = 16000\nring_timeout = 4") as gw:
        rec = Recorder(gw.bus)
        await rec.wait(lambda e: e.kind == "AccountStatus" and e.fields["Status"] == "ONLINE", 10)
        try:
            yield gw, Dialplan(gw.agi.port), rec, alice, peer
        finally:
            await peer.close()


def heard_tone(pcm: bytes, freq: float) -> bool:
    samples = np.frombuffer(pcm, "<i2").astype(float)
    return len(samples) > 8000 and abs(dominant(samples, 16000) - freq) < 5 and rms_dbfs(samples) > -20


def test_a_peer_that_echoes_returns_the_tone_played_into_the_call(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with account_and_peer(tmp_path, prosody, on_call="echo") as (gw, dial, rec, alice, peer):
            write_tone(tmp_path / "media" / "t500.wav", 500, 4)
            out = (await dial("alice", "call-start", user_name=peer.boundjid.bare))["SKYPE_CALL_ID"]
            await rec.status("alice", out, "INPROGRESS", timeout=10)
            assert peer.events[:2] == ["propose", "session-initiate"]
            await dial("alice", "call-set-output-file", call_id=out, file_name="echo.wav")
            await dial("alice", "call-set-input-file", call_id=out, file_name="t500.wav")
            await asyncio.sleep(3)
            await dial("alice", "call-hangup", call_id=out)
            await rec.status("alice", out, "FINISHED", timeout=5)
            for _ in range(50):  # FINISHED is the gateway's own; the stanza still crosses Prosody
                if "session-terminate" in peer.events:
                    break
                await asyncio.sleep(0.05)
            assert "session-terminate" in peer.events
        rate, heard = read_wav(tmp_path / "media" / "echo.wav")
        middle = heard[int(1.0 * rate):int(2.5 * rate)]
        assert abs(dominant(middle, rate) - 500) < 5 and rms_dbfs(middle) > -20
    run(body())


def test_a_peer_that_refuses_or_ignores(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with account_and_peer(tmp_path, prosody, on_call="refuse") as (gw, dial, rec, alice, peer):
            refused = (await dial("alice", "call-start", user_name=peer.boundjid.bare))["SKYPE_CALL_ID"]
            await rec.status("alice", refused, "REFUSED", timeout=10)
            peer.on_call = "ignore"
            ignored = (await dial("alice", "call-start", user_name=peer.boundjid.bare))["SKYPE_CALL_ID"]
            await rec.status("alice", ignored, "MISSED", timeout=10)  # ring_timeout = 4
            await asyncio.sleep(0.3)
            assert peer.events == ["propose", "propose", "retract"]
    run(body())


def test_a_peer_calls_holds_sends_digits_and_hears_the_account(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with account_and_peer(tmp_path, prosody, voice=880) as (gw, dial, rec, alice, peer):
            write_tone(tmp_path / "media" / "t300.wav", 300, 8)
            peer.call(alice)
            incoming = await ringing(rec, "alice")
            await asyncio.sleep(0.2)
            assert peer.events == ["ringing"]
            assert (await dial("alice", "call-answer", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
            await asyncio.wait_for(peer.connected.wait(), 10)
            await dial("alice", "call-set-output-file", call_id=incoming, file_name="from-peer.wav")
            await dial("alice", "call-set-input-file", call_id=incoming, file_name="t300.wav")
            await asyncio.sleep(2)
            assert heard_tone(bytes(peer.heard[-16000 * 2:]), 300)  # the peer hears the account's file

            for digit in "5*":
                await peer.send_digit(digit)
            await rec.wait(lambda e: e.kind == "DTMF" and e.fields["Digit"] == "*", 10)
            assert [e.fields["Digit"] for e in rec.events if e.kind == "DTMF"] == ["5", "*"]
            assert (await dial("alice", "call-dtmf", call_id=incoming, code="7"))["SKYPE_STATUS"] == "SUCCESS"
            for _ in range(50):
                if peer.digits:
                    break
                await asyncio.sleep(0.05)
            assert peer.digits == ["7"]

            peer.hold()
            await rec.status("alice", incoming, "REMOTEHOLD", timeout=10)
            peer.hold(False)
            await rec.status("alice", incoming, "INPROGRESS", timeout=10)
            peer.hang_up()
            await rec.status("alice", incoming, "FINISHED", timeout=10)
            assert rec.statuses("alice", incoming) == ["RINGING", "INPROGRESS", "REMOTEHOLD", "INPROGRESS", "FINISHED"]
        rate, heard = read_wav(tmp_path / "media" / "from-peer.wav")
        assert abs(dominant(heard[int(0.5 * rate):int(1.5 * rate)], rate) - 880) < 5
    run(body())


def test_an_offer_without_a_dtls_fingerprint_is_refused(prosody: Prosody, tmp_path: Path) -> None:
    async def body() -> None:
        async with account_and_peer(tmp_path, prosody) as (gw, dial, rec, alice, peer):
            peer.call(alice, fingerprint=False)
            incoming = await ringing(rec, "alice")
            await dial("alice", "call-answer", call_id=incoming)
            failed = await rec.status("alice", incoming, "FAILED", timeout=10)
            assert failed.fields["FailureReason"] == "no DTLS fingerprint: unencrypted calls are refused"
            for _ in range(50):
                if "session-terminate" in peer.events:
                    break
                await asyncio.sleep(0.05)
            [terminate] = [j for j in peer.jingles if j.get("action") == "session-terminate"]
            reason = terminate.find("{urn:xmpp:jingle:1}reason")
            assert reason.find("{urn:xmpp:jingle:1}security-error") is not None
            assert gw.manager.calls.live == {}
    run(body())
