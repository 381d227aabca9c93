"""The network's side in the log: one INFO line per event, bodies left out."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import ACCOUNTS, USERS, Dialplan, Recorder, run, running_gateway
from fastagi.eventlog import describe
from fastagi.model.calls import CallStatus
from fastagi.model.events import CallChanged, ChatMessage


def test_what_the_network_does_is_logged_one_line_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "report.txt").write_text("numbers")

    async def body() -> None:
        async with running_gateway(tmp_path, ACCOUNTS + USERS) as gw:
            dial, rec = Dialplan(gw.agi.port), Recorder(gw.bus)
            failed = (await dial("alice", "call-start", user_name="erin"))["SKYPE_CALL_ID"]
            await rec.status("alice", failed, "FAILED")
            await dial("alice", "chatmessage-send", user_name="bob", message_body="the secret plan")
            await dial("bob", "user-set-buddy", user_name="alice", status="True")  # alice asks: a buddy request
            await dial("alice", "sms-send", sms_number="+4915112345678", sms_body="also secret")
            sent = await dial("alice", "file-send", user_name="bob", file="report.txt")
            assert sent["SKYPE_STATUS"] == "SUCCESS", sent

    with caplog.at_level(logging.INFO, logger="fastagi.events"):
        run(body())
    lines = [r.getMessage() for r in caplog.records if r.name == "fastagi.events"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "fastagi.events")
    assert "call account=alice call=1 partner=erin direction=outgoing status=FAILED reason='user is offline'" in lines
    chat = [line for line in lines if line.startswith("chat ")]
    assert [line.split(" chat=")[0] for line in chat] == [
        "chat account=bob message=1 partner=alice direction=incoming",
        "chat account=alice message=2 partner=bob direction=outgoing",
    ]
    assert all(line.endswith(" length=15") for line in chat)
    assert "buddy-request account=alice from=bob" in lines
    assert "sms account=alice sms=1 number=+4915112345678 status=DELIVERED price=0.10 currency=EUR" in lines
    assert "balance account=alice balance=10.40 currency=EUR" in lines
    assert "file account=bob transfer=1 partner=alice direction=incoming file=report.txt status=COMPLETED" in lines
    assert "file account=alice transfer=2 partner=bob direction=outgoing file=report.txt status=COMPLETED" in lines
    assert "account account=alice status=ONLINE" in lines
    assert not [line for line in lines if "secret" in line]  # no message body, no SMS text


def test_text_from_the_network_cannot_forge_a_log_line() -> None:
    event = CallChanged("alice", 3, "bob", "Bob", CallStatus.FAILED, "outgoing", "gone\nINFO fake: line")
    assert describe(event) == "call account=alice call=3 partner=bob direction=outgoing status=FAILED reason='gone\\nINFO fake: line'"
    message = ChatMessage("alice", "#alice/$bob;1", "bob", "Bob", "alice", "hi there", 4, "incoming")
    assert describe(message) == "chat account=alice message=4 partner=bob direction=incoming chat=#alice/$bob;1 length=8"
