"""Skype calls bridged to Asterisk channels over AudioSocket, end to end through the gateway."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import Dialplan, Recorder, connect_from, running_gateway, run
from doubles.asterisk_agi import FakeAsterisk
from doubles.audiosocket_client import SLIN, SLIN16, AsteriskAudioSocket

SETUP = """
[alice]
type = account
[bob]
type = account
[echo123]
type = user
behaviour = echo
ring_delay = 0.01
answer_delay = 0.01
[caller]
type = user
behaviour = answer
"""


def tone_burst(rate: int, silence: float, seconds: float, freq: float = 440) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    tone = (8000 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    return bytes(int(rate * silence) * 2) + tone.tobytes()


async def bridged_echo_call(gw, kind: int) -> tuple[str, AsteriskAudioSocket]:  # type: ignore[no-untyped-def]
    rec = Recorder(gw.bus)
    started = await Dialplan(gw.agi.port)("alice", "call-start", user_name="echo123")
    await rec.status("alice", started["SKYPE_CALL_ID"], "INPROGRESS")
    client = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.UUID(started["SKYPE_CALL_UUID"]), kind)
    return started["SKYPE_CALL_ID"], client


def heard_delay_and_frequency(client: AsteriskAudioSocket, sent: list[float], first_tone_frame: int) -> tuple[float, float]:
    answers = [r for r in client.received if r.kind == client.kind]
    samples = np.frombuffer(b"".join(r.payload for r in answers), "<i2").astype(float)
    onset = int(np.argmax(np.abs(samples) > 4000))
    assert onset > 0, "the tone never came back"
    frame, offset = divmod(onset, client.frame_bytes // 2)
    delay = answers[frame].at + offset / client.rate - sent[first_tone_frame]
    tone = samples[onset + client.rate // 10: onset + client.rate // 10 + client.rate // 2]
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)), 8 * len(tone)))
    return delay, float(np.fft.rfftfreq(8 * len(tone), 1 / client.rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("kind", [SLIN, SLIN16])
def test_tone_from_asterisk_comes_back_from_echo123(tmp_path: Path, kind: int) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP) as gw:
            call, client = await bridged_echo_call(gw, kind)
            sent = await client.send_audio(tone_burst(client.rate, 0.3, 0.8))
            await asyncio.sleep(0.2)
            delay, freq = heard_delay_and_frequency(client, sent, 15)
            assert freq == pytest.approx(440, abs=2)
            assert 0 < delay < 0.060, f"added {delay * 1000:.1f} ms"
            await client.hang_up()
            await Recorder(gw.bus).status("alice", call, "FINISHED")  # Asterisk hanging up ends the call
    run(body())


def test_dtmf_both_ways(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP) as gw:
            rec = Recorder(gw.bus)
            played: list[tuple[str, str, bool]] = []
            gw.bridge.play_dtmf = lambda channel, digit, receive: played.append((channel, digit, receive))
            call, client = await bridged_echo_call(gw, SLIN)
            assert gw.manager.calls.live[int(call)].asterisk_channel == "Local/s@cap-00000000;2"  # the channel of call-start
            await client.send_audio(bytes(640))
            client.send_dtmf("7")  # Asterisk → Skype: echo123 sends it back → PlayDTMF on the channel
            event = await rec.wait(lambda e: e.kind == "DTMF")
            assert (event.account, event.fields["Digit"]) == ("alice", "7")
            for _ in range(50):
                if played:
                    break
                await asyncio.sleep(0.01)
            assert played == [("Local/s@cap-00000000;2", "7", False)]  # sent out to whoever placed the call
            await client.hang_up()
    run(body())


def test_skype_side_hangup_closes_the_socket(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP) as gw:
            call, client = await bridged_echo_call(gw, SLIN16)
            sending = asyncio.create_task(client.send_audio(bytes(640 * 50)))
            await asyncio.sleep(0.1)
            assert (await Dialplan(gw.agi.port)("alice", "call-hangup", call_id=call))["SKYPE_STATUS"] == "SUCCESS"
            await client.wait_closed()
            assert client.kinds()[-1] == 0x00 and client.violation is None  # hangup message, then close
            sending.cancel()
    run(body())


def test_account_to_account_over_two_audiosockets(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP) as gw:
            rec = Recorder(gw.bus)
            started = await Dialplan(gw.agi.port)("alice", "call-start", user_name="bob")
            ringing = await rec.wait(lambda e: e.account == "bob" and e.fields.get("Status") == "RINGING")
            await Dialplan(gw.agi.port)("bob", "call-answer", call_id=ringing.fields["CallID"])
            alice = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.UUID(started["SKYPE_CALL_UUID"]), SLIN16)
            bob = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.UUID(ringing.fields["UUID"]), SLIN)
            listening = asyncio.create_task(bob.send_audio(bytes(320 * 60)))
            await alice.send_audio(tone_burst(16000, 0.1, 0.8, freq=1000))
            await listening
            heard = np.frombuffer(bob.audio(), "<i2").astype(float)[-8000:]
            spectrum = np.abs(np.fft.rfft(heard))
            assert np.fft.rfftfreq(len(heard), 1 / 8000)[np.argmax(spectrum)] == pytest.approx(1000, abs=3)
            await alice.hang_up()
            await rec.status("bob", ringing.fields["CallID"], "FINISHED")
            await bob.wait_closed()
    run(body())


def test_unknown_uuid_is_dropped_and_the_server_keeps_serving(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP) as gw:
            stranger = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.uuid4(), SLIN)
            await stranger.wait_closed()
            assert gw.audiosocket.rejected == 1
            call, client = await bridged_echo_call(gw, SLIN)
            sent = await client.send_audio(tone_burst(8000, 0.2, 0.6))
            await asyncio.sleep(0.2)
            assert heard_delay_and_frequency(client, sent, 10)[1] == pytest.approx(440, abs=2)
            await client.hang_up()
    run(body())


def test_voicemail_survives_the_hangup_of_the_channel_that_sent_the_call_there(tmp_path: Path) -> None:
    """skype-route-phone on Asterisk 22: nobody answers the phone, the AudioSocket channel
    runs call-vm and then hangs up; the caller's message must still be recorded and sent."""
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP) as gw:
            rec = Recorder(gw.bus)
            call = gw.embedded.remote_call("caller", "alice")
            ringing = await rec.status("alice", call, "RINGING")
            client = await AsteriskAudioSocket.connect(gw.audiosocket.port, uuid.UUID(ringing.fields["UUID"]), SLIN16)
            await client.send_audio(bytes(640 * 5))  # ringback while the phone rings
            flow = FakeAsterisk(gw.agi.port)
            flow.variables["CHANNEL"] = f"AudioSocket/127.0.0.1:{gw.audiosocket.port}-{ringing.fields['UUID']}"
            assert (await flow.agi(f"call-vm?account=alice&call-id={call}")).skype()["SKYPE_STATUS"] == "SUCCESS"
            await client.hang_up()  # the flow's Hangup()
            await rec.wait(lambda e: e.kind == "CallStatus" and e.fields["Status"] in ("VM_SENT", "VM_CANCELLED"))
            assert rec.statuses("alice", call) == [
                "RINGING", "VM_BUFFERING_GREETING", "VM_PLAYING_GREETING", "VM_RECORDING", "VM_UPLOADING", "VM_SENT"]
    run(body())


@pytest.mark.parametrize("general, refused", [("", 1), ("permit = 127.0.0.0/8", 0)], ids=["default", "wider"])
def test_a_live_call_s_uuid_attaches_only_from_the_permit_of_fastagi(tmp_path: Path, general: str, refused: int) -> None:
    """No `[audiosocket] permit`: FastAGI's applies, 127.0.0.1/32 unless the file says otherwise."""
    async def body() -> None:
        async with running_gateway(tmp_path, SETUP, general=general) as gw:
            rec = Recorder(gw.bus)
            started = await Dialplan(gw.agi.port)("alice", "call-start", user_name="echo123")
            await rec.status("alice", started["SKYPE_CALL_ID"], "INPROGRESS")
            _, writer = await connect_from("127.0.0.2", gw.audiosocket.port)
            writer.write(b"\x01\x00\x10" + uuid.UUID(started["SKYPE_CALL_UUID"]).bytes)
            await asyncio.sleep(0.2)
            assert (gw.audiosocket.refused, gw.audiosocket.active) == (refused, 1 - refused)
            writer.close()
    run(body())
