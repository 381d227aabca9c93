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
