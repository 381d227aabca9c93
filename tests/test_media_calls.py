"""Real audio through calls, driven over the server socket: tones in, recordings out."""

from __future__ import annotations

import asyncio
import os
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import Dialplan, Recorder, running_gateway, run

USERS = "\n[echo123]\ntype = user\nbehaviour = echo\nring_delay = 0.01\nanswer_delay = 0.01\n"
ACCOUNTS = "".join(f"\n[{n}]\ntype = account\n" for n in ("alice", "bob", "carl"))


def tone(path: Path, freq: float, seconds: float, rate: int = 16000, width: int = 2, channels: int = 1) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    wave_form = 0.5 * np.sin(2 * np.pi * freq * t)
    samples = (wave_form * 127 + 128).astype(np.uint8) if width == 1 else (wave_form * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.repeat(samples, channels).tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float64), wav.getframerate()


def energy_at(samples: np.ndarray, rate: int, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > freq - 20) & (freqs < freq + 20)
    return float(spectrum[band].sum())


def dominant(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


async def answered_call(gw, dial: Dialplan, rec: Recorder, caller: str, callee: str) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    out = (await dial(caller, "call-start", user_name=callee))["SKYPE_CALL_ID"]
    if callee not in gw.manager.accounts.names():
        await rec.status(caller, out, "INPROGRESS")
        return out, None
    incoming = (await rec.wait(lambda e: e.account == callee and e.fields.get("Status") == "RINGING"
                               and e.fields.get("Partner") == caller)).fields["CallID"]
    assert (await dial(callee, "call-answer", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
    await rec.status(caller, out, "INPROGRESS")
    return out, incoming


@pytest.mark.parametrize("record_rate", [8000, 16000])
def test_tone_through_echo123_is_recorded_at_440_hz(tmp_path: Path, record_rate: int) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS, f"record_rate = {record_rate}") as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            tone(tmp_path / "media" / "tone.wav", 440, 3.0, rate=44100)
            call, _ = await answered_call(gw, dial, rec, "alice", "echo123")
            assert (await dial("alice", "call-set-input-file", call_id=call, file_name="tone.wav"))["SKYPE_STATUS"] == "SUCCESS"
            assert (await dial("alice", "call-set-output-file", call_id=call, file_name="out.wav"))["SKYPE_STATUS"] == "SUCCESS"
            started = time.monotonic()
            await asyncio.sleep(1.0)
            assert (await dial("alice", "call-hangup", call_id=call))["SKYPE_STATUS"] == "SUCCESS"
            recorded_for = time.monotonic() - started
            samples, rate = read_wav(tmp_path / "media" / "out.wav")
            assert rate == record_rate
            assert abs(len(samples) / rate - recorded_for) < 0.040, (len(samples) / rate, recorded_for)
            assert abs(dominant(samples[rate // 10:], rate) - 440) < 3
    run(body())


def test_account_to_account_audio_reaches_the_other_side(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS, "record_rate = 16000") as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            tone(tmp_path / "media" / "a440.wav", 440, 2.0, rate=8000, width=1)  # 8-bit 8 kHz input
            out, incoming = await answered_call(gw, dial, rec, "alice", "bob")
            await dial("alice", "call-set-input-file", call_id=out, file_name="a440.wav")
            await dial("bob", "call-set-output-file", call_id=incoming, file_name="bob-hears.wav")
            await dial("alice", "call-set-output-file", call_id=out, file_name="alice-hears.wav")
            await asyncio.sleep(0.6)
            await dial("alice", "call-hangup", call_id=out)
            await rec.status("bob", incoming, "FINISHED")
            heard, rate = read_wav(tmp_path / "media" / "bob-hears.wav")
            assert abs(dominant(heard, rate) - 440) < 3
            silent, _ = read_wav(tmp_path / "media" / "alice-hears.wav")
            assert np.abs(silent).max() == 0  # bob said nothing; alice does not hear herself
    run(body())


def test_three_party_conference_mixes_without_self_echo(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS, "record_rate = 16000") as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            tone(tmp_path / "media" / "a440.wav", 440, 2.0, rate=48000, channels=2)
            tone(tmp_path / "media" / "b1000.wav", 1000, 2.0, rate=22050)
            first, bob_call = await answered_call(gw, dial, rec, "alice", "bob")
            added = await dial("alice", "call-conference", call_id=first, conference_user_name="carl")
            second = added["SKYPE_CONFERENCE_CALL_ID"]
            carl_call = (await rec.wait(lambda e: e.account == "carl" and e.fields.get("Status") == "RINGING")).fields["CallID"]
            await dial("carl", "call-answer", call_id=carl_call)
            await rec.status("alice", second, "INPROGRESS")
            await dial("alice", "call-set-input-file", call_id=first, file_name="a440.wav")
            await dial("bob", "call-set-input-file", call_id=bob_call, file_name="b1000.wav")
            for account, call, name in [("alice", first, "alice.wav"), ("bob", bob_call, "bob.wav"), ("carl", carl_call, "carl.wav")]:
                assert (await dial(account, "call-set-output-file", call_id=call, file_name=name))["SKYPE_STATUS"] == "SUCCESS"
            await asyncio.sleep(0.6)
            for call in (first, second):
                await dial("alice", "call-hangup", call_id=call)
            await rec.status("carl", carl_call, "FINISHED")
            heard = {name: read_wav(tmp_path / "media" / f"{name}.wav") for name in ("alice", "bob", "carl")}
            carl, rate = heard["carl"]
            assert energy_at(carl, rate, 440) > 0.2 * energy_at(carl, rate, 1000) > 0
            alice, _ = heard["alice"]
            assert energy_at(alice, rate, 440) < 0.01 * energy_at(alice, rate, 1000)  # no self-echo
            bob, _ = heard["bob"]
            assert energy_at(bob, rate, 1000) < 0.01 * energy_at(bob, rate, 440)
    run(body())


def test_bad_files_are_refused_and_leave_the_file_system_untouched(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS) as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            media = tmp_path / "media"
            (media / "taken.wav").write_bytes(b"keep me")
            (media / "notes.wav").write_text("this is not a WAV file")
            (media / "short.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
            tone(media / "alaw.wav", 440, 0.1)
            raw = bytearray((media / "alaw.wav").read_bytes())
            raw[20:22] = (6).to_bytes(2, "little")  # format tag 6: A-law
            (media / "alaw.wav").write_bytes(bytes(raw))
            (tmp_path / "outside.wav").write_bytes(b"x")
            os.symlink(tmp_path / "outside.wav", media / "link.wav")
            (media / "folder.wav").mkdir()
            os.mkfifo(media / "pipe.wav")
            call, _ = await answered_call(gw, dial, rec, "alice", "echo123")
            before = sorted((p.name, p.stat().st_size if p.is_file() else -1) for p in media.iterdir())
            cases_in = {
                "nothing.wav": "file_missing", "notes.wav": "invalid-argument", "short.wav": "invalid-argument",
                "alaw.wav": "invalid-argument", "../outside.wav": "invalid-argument", str(tmp_path / "outside.wav"): "invalid-argument",
                "link.wav": "invalid-argument", "folder.wav": "invalid-argument", "pipe.wav": "invalid-argument",
            }
            for name, code in cases_in.items():
                result = await dial("alice", "call-set-input-file", call_id=call, file_name=name)
                assert (result["SKYPE_STATUS"], result["SKYPE_ERROR"]) == ("FAILED", code), (name, result)
                assert result["SKYPE_ERROR_TEXT"]
            cases_out = {
                "taken.wav": "file_exists", "../escape.wav": "invalid-argument", str(tmp_path / "abs.wav"): "invalid-argument",
                "no/such/dir.wav": "invalid-argument", "link.wav": "invalid-argument", "folder.wav": "invalid-argument",
            }
            for name, code in cases_out.items():
                result = await dial("alice", "call-set-output-file", call_id=call, file_name=name)
                assert result["SKYPE_ERROR"] == code, (name, result)
            unknown = await dial("alice", "call-set-output-file", call_id="999", file_name="new.wav")
            assert unknown["SKYPE_ERROR"] == "unknown_call_error"
            after = sorted((p.name, p.stat().st_size if p.is_file() else -1) for p in media.iterdir())
            assert after == before and (media / "taken.wav").read_bytes() == b"keep me"
            assert not (tmp_path / "escape.wav").exists() and not (tmp_path / "abs.wav").exists()
    run(body())


def test_two_calls_racing_for_one_file_name(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS) as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            first, _ = await answered_call(gw, dial, rec, "alice", "echo123")
            second, _ = await answered_call(gw, dial, rec, "bob", "echo123")
            results = await asyncio.gather(
                dial("alice", "call-set-output-file", call_id=first, file_name="same.wav"),
                dial("bob", "call-set-output-file", call_id=second, file_name="same.wav"),
            )
            assert sorted(r["SKYPE_ERROR"] for r in results) == ["", "file_exists"]
    run(body())


def test_hold_silences_the_call_and_pauses_the_file(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS, "record_rate = 16000") as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            tone(tmp_path / "media" / "a440.wav", 440, 3.0)
            out, incoming = await answered_call(gw, dial, rec, "alice", "bob")
            await dial("bob", "call-set-output-file", call_id=incoming, file_name="bob-hears.wav")
            await dial("alice", "call-set-input-file", call_id=out, file_name="a440.wav")
            await asyncio.sleep(0.4)
            assert (await dial("alice", "call-hold", call_id=out))["SKYPE_STATUS"] == "SUCCESS"
            await asyncio.sleep(0.4)
            assert (await dial("alice", "call-resume", call_id=out))["SKYPE_STATUS"] == "SUCCESS"
            await asyncio.sleep(0.4)
            await dial("alice", "call-hangup", call_id=out)
            await rec.status("bob", incoming, "FINISHED")
            heard, rate = read_wav(tmp_path / "media" / "bob-hears.wav")
            loud = np.abs(heard).reshape(-1, rate // 50).max(axis=1) > 1000  # per 20 ms frame
            runs = np.flatnonzero(np.diff(loud.astype(int)))  # where tone starts or stops
            assert loud[:10].any() and loud[-10:].any(), "tone before the hold and after the resume"
            assert len(runs) >= 2 and 15 <= runs[-1] - runs[-2] <= 25, "a silent gap of ~0.4 s for the hold"
    run(body())
