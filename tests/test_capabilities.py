"""`not_supported`: an action the account's network cannot do fails with a reason, and nothing is tried."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Dialplan, Recorder, run, running_gateway
from fastagi.actions import ACTIONS
from fastagi.model.capabilities import ALL_FEATURES

SAMPLE = {"call-id": "1", "user-name": "carol", "code": "1", "file-name": "x.wav", "file": "x.txt",
          "conference-user-name": "carol", "chat-name": "#alice/$carol;1", "message-body": "hi",
          "sms-number": "+393331234567", "sms-body": "hi", "status": "true"}
NEEDING = sorted(name for name, action in ACTIONS.items() if action.needs is not None)


def test_every_action_of_a_network_feature_declares_it() -> None:
    assert set(NEEDING) == set(ACTIONS) - {"list-registered", "calls-list", "get-call-id"}
    assert all("not_supported" in ACTIONS[name].all_errors() for name in NEEDING)
    assert "not_supported" not in ACTIONS["list-registered"].all_errors()


@pytest.mark.parametrize("name", NEEDING)
def test_an_action_whose_feature_is_off_is_not_supported(tmp_path: Path, name: str) -> None:
    action = ACTIONS[name]

    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            gw.embedded.features = ALL_FEATURES - {action.needs}
            events = Recorder(gw.bus).events
            result = await Dialplan(gw.agi.port)("alice", name, **{a.param: SAMPLE[a.name] for a in action.arguments})
            assert result["SKYPE_STATUS"] == "FAILED"
            assert result["SKYPE_ERROR"] == "not_supported"
            assert result["SKYPE_ERROR_TEXT"] == f"alice is on the embedded network, which has no {action.needs.value}"
            assert all(result[variable] == "" for variable in result if variable not in
                       ("SKYPE_STATUS", "SKYPE_ERROR", "SKYPE_ERROR_TEXT"))
            assert events == []  # nothing was tried
            other = ("chatmessage-send", {"user_name": "carol", "message_body": "hi"}) if name == "get-profile-balance" \
                else ("get-profile-balance", {})
            assert (await Dialplan(gw.agi.port)("alice", other[0], **other[1]))["SKYPE_STATUS"] == "SUCCESS"  # the rest works
    run(body())


def test_sms_with_the_feature_on_still_reaches_the_network(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            sent = await Dialplan(gw.agi.port)("alice", "sms-send", sms_number="+393331234567", sms_body="hi")
            assert sent["SKYPE_STATUS"] == "SUCCESS"
    run(body())
