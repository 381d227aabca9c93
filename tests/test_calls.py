"""Every call action through the server socket, for each remote behaviour and account to account."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import ACCOUNTS, Dialplan, Recorder, running_gateway, run
from fastagi.network.embedded import Timing

FAST = "ring_delay = 0.01\nanswer_delay = 0.02\n"
CALL_USERS = "".join(
    f"\n[{name}]\ntype = user\nfullname = {name.title()} User\nbehaviour = {behaviour}\n{FAST}"
    for name, behaviour in [
        ("echo123", "echo"), ("answerer", "answer"), ("busybody", "busy"), ("silent", "noanswer"),
        ("refuser", "refuse"), ("away1", "offline"), ("vmuser", "voicemail"),
    ]
) + "\n[novm]\ntype = user\nbehaviour = voicemail\nvoicemail = no\n" + FAST
CALL_ACCOUNTS = ACCOUNTS + "\n[carl]\ntype = account\nvoicemail = no\n"
GENERAL = "ring_timeout = 0.3"


def scenario(test):  # type: ignore[no-untyped-def]
    """Run `test(gateway, dialplan, recorder)` against a gateway with the call users."""

    def wrapper(tmp_path: Path) -> None:
        async def body() -> None:
            async with running_gateway(tmp_path, CALL_ACCOUNTS + CALL_USERS, GENERAL) as gw:
                gw.embedded.timing = Timing(vm_greeting=0.05, vm_message=0.1, vm_upload=0.02, ring_timeout=0.3)
                await test(gw, Dialplan(gw.agi.port), Recorder(gw.bus))
        run(body())

    wrapper.__name__ = test.__name__
    return wrapper


async def start(dial: Dialplan, account: str, user: str) -> str:
    result = await dial(account, "call-start", user_name=user)
    assert result["SKYPE_STATUS"] == "SUCCESS", result
    assert len(result["SKYPE_CALL_UUID"]) == 36
    return result["SKYPE_CALL_ID"]


# -- remote behaviours -------------------------------------------------------------
@pytest.mark.parametrize("user, final", [("echo123", "INPROGRESS"), ("answerer", "INPROGRESS"), ("busybody", "BUSY"),
                                         ("refuser", "REFUSED"), ("silent", "MISSED")])
def test_call_to_each_remote_behaviour(tmp_path: Path, user: str, final: str) -> None:
    @scenario
    async def test(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
        call = await start(dial, "alice", user)
        await rec.status("alice", call, final)
        assert rec.statuses("alice", call) == ["ROUTING", "RINGING", final]
        if final == "INPROGRESS":
            assert (await dial("alice", "call-hangup", call_id=call))["SKYPE_STATUS"] == "SUCCESS"
            assert rec.statuses("alice", call)[-1] == "FINISHED"
        assert int(call) not in gw.manager.calls.live
        history = gw.store.calls("alice")
        assert [(r["id"], r["partner"], r["status"]) for r in history] == [(int(call), user, rec.statuses("alice", call)[-1])]

    test(tmp_path)


@scenario
async def test_offline_user_fails_with_reason(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    call = await start(dial, "alice", "away1")
    event = await rec.status("alice", call, "FAILED")
    assert event.fields["FailureReason"] == "user is offline"
    assert gw.store.calls("alice")[0]["failure_reason"] == "user is offline"


@scenario
async def test_voicemail_user_takes_a_message(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    call = await start(dial, "alice", "vmuser")
    await rec.status("alice", call, "VM_RECORDING")
    assert (await dial("alice", "call-hangup", call_id=call))["SKYPE_STATUS"] == "SUCCESS"
    await rec.status("alice", call, "VM_SENT")
    assert rec.statuses("alice", call) == ["ROUTING", "RINGING", "VM_BUFFERING_GREETING", "VM_PLAYING_GREETING",
                                           "VM_RECORDING", "VM_UPLOADING", "VM_SENT"]
    novm = await start(dial, "alice", "novm")
    await rec.status("alice", novm, "MISSED")


@scenario
async def test_unknown_user_and_calling_oneself(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    assert (await dial("alice", "call-start", user_name="nobody1"))["SKYPE_ERROR"] == "unknown_user"
    own = await dial("alice", "call-start", user_name="alice")
    assert own["SKYPE_ERROR"] == "invalid-argument" and own["SKYPE_CALL_ID"] == ""
    assert gw.manager.calls.live == {}


# -- account to account -----------------------------------------------------------
@scenario
async def test_account_to_account_both_sides(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    out = await start(dial, "alice", "bob")
    ringing = await rec.wait(lambda e: e.account == "bob" and e.kind == "CallStatus" and e.fields["Status"] == "RINGING")
    incoming = ringing.fields["CallID"]
    assert ringing.fields["Direction"] == "incoming" and ringing.fields["Partner"] == "alice"
    assert ringing.fields["PartnerName"] == "Alice Example"
    assert (await dial("bob", "get-call-id", user_name="alice"))["SKYPE_CALL_ID"] == incoming
    assert rec.statuses("alice", out) == ["ROUTING", "RINGING"]

    async def both(a: str, b: str) -> None:
        assert gw.manager.calls.live[int(out)].status.value == a and gw.manager.calls.live[int(incoming)].status.value == b

    assert (await dial("bob", "call-answer", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
    await both("INPROGRESS", "INPROGRESS")
    await dial("alice", "call-hold", call_id=out)
    await both("LOCALHOLD", "REMOTEHOLD")
    assert (await dial("bob", "call-resume", call_id=incoming))["SKYPE_ERROR"] == "invalid_call_status"  # held by alice
    await dial("bob", "call-hold", call_id=incoming)
    await both("ONHOLD", "ONHOLD")
    await dial("alice", "call-resume", call_id=out)
    await both("REMOTEHOLD", "LOCALHOLD")
    await dial("bob", "call-resume", call_id=incoming)
    await both("INPROGRESS", "INPROGRESS")
    assert (await dial("alice", "call-dtmf", call_id=out, code="12%23"))["SKYPE_STATUS"] == "SUCCESS"
    await rec.wait(lambda e: e.kind == "DTMF" and e.fields["Digit"] == "#")
    assert [(e.account, e.fields["CallID"], e.fields["Digit"], e.fields["Partner"]) for e in rec.events if e.kind == "DTMF"] == [
        ("bob", incoming, "1", "alice"), ("bob", incoming, "2", "alice"), ("bob", incoming, "#", "alice")]  # one per digit
    assert (await dial("bob", "call-hangup", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
    await rec.status("alice", out, "FINISHED")
    assert rec.statuses("bob", incoming) == ["RINGING", "INPROGRESS", "REMOTEHOLD", "ONHOLD", "LOCALHOLD", "INPROGRESS", "FINISHED"]
    assert gw.manager.calls.live == {}
    assert {(r["account"], r["status"], r["direction"]) for r in gw.store.calls()} == {
        ("alice", "FINISHED", "outgoing"), ("bob", "FINISHED", "incoming")}


@scenario
async def test_refuse_cancel_and_missed_between_accounts(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    out = await start(dial, "alice", "bob")
    incoming = (await rec.wait(lambda e: e.account == "bob" and e.fields.get("Status") == "RINGING")).fields["CallID"]
    await dial("bob", "call-hangup", call_id=incoming)  # the callee declines
    await rec.status("alice", out, "REFUSED")
    assert rec.statuses("bob", incoming)[-1] == "REFUSED"
    out = await start(dial, "alice", "bob")
    incoming = (await rec.wait(lambda e: e.account == "bob" and e.fields.get("Status") == "RINGING" and e.fields["CallID"] != incoming)).fields["CallID"]
    await dial("alice", "call-hangup", call_id=out)  # the caller gives up
    assert rec.statuses("alice", out)[-1] == "CANCELLED"
    await rec.status("bob", incoming, "MISSED")
    out = await start(dial, "alice", "bob")
    await rec.status("alice", out, "MISSED", timeout=2)  # nobody answers within ring_timeout
    assert gw.manager.calls.live == {}


@scenario
async def test_calls_of_another_account_are_invisible(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    out = await start(dial, "alice", "echo123")
    await rec.status("alice", out, "INPROGRESS")
    for action in ("call-hangup", "call-hold", "call-answer", "call-resume", "call-vm"):
        assert (await dial("bob", action, call_id=out))["SKYPE_ERROR"] == "unknown_call_error"
    assert (await dial("bob", "call-transfer", call_id=out, user_name="carol"))["SKYPE_ERROR"] == "unknown_call_error"
    assert (await dial("bob", "get-call-id", user_name="echo123"))["SKYPE_ERROR"] == "no_calls_found"
    assert (await dial("bob", "calls-list"))["SKYPE_CALLS_COUNT"] == "0"
    assert (await dial("alice", "call-hangup", call_id="999"))["SKYPE_ERROR"] == "unknown_call_error"
    assert (await dial("alice", "call-hangup", call_id="x1"))["SKYPE_ERROR"] == "invalid-argument"


# -- wrong states -----------------------------------------------------------------
@scenario
async def test_every_wrong_state_is_invalid_call_status(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    out = await start(dial, "alice", "silent")
    await rec.status("alice", out, "RINGING")
    for action in ("call-answer", "call-hold", "call-resume", "call-vm"):
        result = await dial("alice", action, call_id=out)
        assert result["SKYPE_ERROR"] == "invalid_call_status", action
        assert "RINGING" in result["SKYPE_ERROR_TEXT"]
    assert (await dial("alice", "call-dtmf", call_id=out, code="1"))["SKYPE_ERROR"] == "invalid_call_status"
    assert (await dial("alice", "call-conference", call_id=out, conference_user_name="echo123"))["SKYPE_ERROR"] == "invalid_call_status"
    assert (await dial("alice", "call-transfer", call_id=out, user_name="carol"))["SKYPE_ERROR"] == "cannot_transfer"
    live = await start(dial, "alice", "echo123")
    await rec.status("alice", live, "INPROGRESS")
    answered = await dial("alice", "call-answer", call_id=live)
    assert (answered["SKYPE_ERROR"], answered["SKYPE_ERROR_TEXT"]) == (
        "invalid_call_status", f"call {live} is outgoing and INPROGRESS: only a ringing incoming call can be answered")
    assert (await dial("alice", "call-resume", call_id=live))["SKYPE_ERROR"] == "invalid_call_status"
    assert (await dial("alice", "call-vm", call_id=live))["SKYPE_ERROR"] == "invalid_call_status"
    assert (await dial("alice", "call-dtmf", call_id=live, code="12A"))["SKYPE_ERROR"] == "invalid-argument"
    await dial("alice", "call-hold", call_id=live)
    assert (await dial("alice", "call-hold", call_id=live))["SKYPE_ERROR"] == "invalid_call_status"
    assert (await dial("alice", "call-dtmf", call_id=live, code="5"))["SKYPE_ERROR"] == "invalid_call_status"
    await dial("alice", "call-hangup", call_id=live)
    await dial("alice", "call-hangup", call_id=out)
    assert (await dial("alice", "call-hangup", call_id=out))["SKYPE_ERROR"] == "unknown_call_error"  # ended calls are gone


@scenario
async def test_dtmf_to_echo_comes_back_as_event(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    call = await start(dial, "alice", "echo123")
    await rec.status("alice", call, "INPROGRESS")
    assert (await dial("alice", "call-dtmf", call_id=call, code="*9"))["SKYPE_STATUS"] == "SUCCESS"
    await rec.wait(lambda e: e.kind == "DTMF" and e.fields["Digit"] == "9")
    assert [(e.account, e.fields["Digit"], e.fields["Partner"]) for e in rec.events if e.kind == "DTMF"] == [
        ("alice", "*", "echo123"), ("alice", "9", "echo123")]


# -- voicemail ----------------------------------------------------------------------
@scenario
async def test_call_vm_between_accounts(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    out = await start(dial, "bob", "alice")
    incoming = (await rec.wait(lambda e: e.account == "alice" and e.fields.get("Status") == "RINGING")).fields["CallID"]
    assert (await dial("alice", "call-vm", call_id=incoming))["SKYPE_STATUS"] == "SUCCESS"
    await rec.status("bob", out, "VM_RECORDING")
    await dial("bob", "call-hangup", call_id=out)
    await rec.status("bob", out, "VM_SENT")
    await rec.status("alice", incoming, "VM_SENT")
    voicemail = await rec.wait(lambda e: e.kind == "Voicemail")
    assert (voicemail.account, voicemail.fields["Partner"]) == ("alice", "bob")
    assert rec.statuses("alice", incoming) == ["RINGING", "VM_BUFFERING_GREETING", "VM_PLAYING_GREETING", "VM_RECORDING", "VM_UPLOADING", "VM_SENT"]


@scenario
async def test_a_voicemail_lasts_as_long_as_its_message(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    """A scripted caller speaks 2 s into voicemail: Duration=2, not counting the ringing and the 1 s greeting."""
    gw.embedded.timing = Timing(vm_greeting=1.0, vm_message=2.0, vm_upload=0.02, ring_timeout=0.3)
    incoming = gw.embedded.remote_call("answerer", "alice")
    await asyncio.sleep(0.2)  # ringing
    assert (await dial("alice", "call-vm", call_id=str(incoming)))["SKYPE_STATUS"] == "SUCCESS"
    voicemail = await rec.wait(lambda e: e.kind == "Voicemail", 10)
    assert voicemail.fields["Duration"] == "2"  # from the call's creation it was 3.2 s


@scenario
async def test_call_vm_from_remote_user_and_disabled_voicemail(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    incoming = gw.embedded.remote_call("answerer", "alice")
    assert (await dial("alice", "call-vm", call_id=str(incoming)))["SKYPE_STATUS"] == "SUCCESS"
    await rec.status("alice", incoming, "VM_SENT")
    to_carl = gw.embedded.remote_call("answerer", "carl")
    disabled = await dial("carl", "call-vm", call_id=str(to_carl))
    assert disabled["SKYPE_ERROR"] == "invalid_call_status" and "voicemail" in disabled["SKYPE_ERROR_TEXT"]
    assert (await dial("carl", "call-answer", call_id=str(to_carl)))["SKYPE_STATUS"] == "SUCCESS"
    assert gw.manager.calls.live[to_carl].status.value == "INPROGRESS"


# -- transfer ------------------------------------------------------------------------
@scenario
async def test_transfer_errors_and_success(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    incoming = gw.embedded.remote_call("answerer", "alice")
    await dial("alice", "call-answer", call_id=str(incoming))
    for target, reason in [("away1", "offline"), ("nobody1", "no Skype user"), ("answerer", "already")]:
        result = await dial("alice", "call-transfer", call_id=str(incoming), user_name=target)
        assert result["SKYPE_ERROR"] == "cannot_transfer" and reason in result["SKYPE_ERROR_TEXT"], result
    await dial("bob", "user-set-block", user_name="answerer", status="True")
    blocked = await dial("alice", "call-transfer", call_id=str(incoming), user_name="bob")
    assert blocked["SKYPE_ERROR"] == "cannot_transfer" and "blocked" in blocked["SKYPE_ERROR_TEXT"]
    assert (await dial("alice", "call-transfer", call_id=str(incoming), user_name="carl"))["SKYPE_STATUS"] == "SUCCESS"
    assert rec.statuses("alice", incoming)[-2:] == ["TRANSFERRING", "TRANSFERRED"]
    handed = await rec.wait(lambda e: e.account == "carl" and e.fields.get("Status") == "RINGING")
    assert handed.fields["Partner"] == "answerer"


@scenario
async def test_transfer_between_accounts_moves_the_far_party(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    out = await start(dial, "bob", "alice")
    incoming = (await rec.wait(lambda e: e.account == "alice" and e.fields.get("Status") == "RINGING")).fields["CallID"]
    await dial("alice", "call-answer", call_id=incoming)
    assert (await dial("alice", "call-transfer", call_id=incoming, user_name="carl"))["SKYPE_STATUS"] == "SUCCESS"
    await rec.status("bob", out, "TRANSFERRED")
    new = await rec.wait(lambda e: e.account == "carl" and e.fields.get("Status") == "RINGING")
    assert new.fields["Partner"] == "bob"
    assert [c.partner for c in gw.manager.calls.of("bob")] == ["carl"]


# -- conference, lookups ---------------------------------------------------------------
@scenario
async def test_conference_and_calls_list(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    first = await start(dial, "alice", "echo123")
    await rec.status("alice", first, "INPROGRESS")
    added = await dial("alice", "call-conference", call_id=first, conference_user_name="answerer")
    assert added["SKYPE_STATUS"] == "SUCCESS"
    second = added["SKYPE_CONFERENCE_CALL_ID"]
    await rec.status("alice", second, "INPROGRESS")
    again = await dial("alice", "call-conference", call_id=first, conference_user_name="answerer")
    assert again["SKYPE_ERROR"] == "invalid-argument"
    listed = await dial("alice", "calls-list")
    assert listed["SKYPE_CALLS_COUNT"] == "2"
    assert (listed["SKYPE_CALLS_1"], listed["SKYPE_CALLS_1_ID"], listed["SKYPE_CALLS_1_STATUS"]) == ("echo123", first, "INPROGRESS")
    assert (listed["SKYPE_CALLS_2"], listed["SKYPE_CALLS_2_ID"], listed["SKYPE_CALLS_2_STATUS"]) == ("answerer", second, "INPROGRESS")
    conference_ids = {e.fields["ConferenceID"] for e in rec.events if e.kind == "CallStatus" and e.fields["CallID"] == second}
    assert conference_ids == {first}
    assert (await dial("alice", "get-call-id", user_name="answerer"))["SKYPE_CALL_ID"] == second
    await dial("alice", "call-hangup", call_id=first)
    await dial("alice", "call-hangup", call_id=second)
    assert (await dial("alice", "get-call-id", user_name="answerer"))["SKYPE_ERROR"] == "no_calls_found"
    assert (await dial("alice", "calls-list"))["SKYPE_CALLS_COUNT"] == "0"


@scenario
async def test_incoming_ring_timeout_applies_the_account_policy(gw, dial, rec) -> None:  # type: ignore[no-untyped-def]
    missed = gw.embedded.remote_call("answerer", "alice")
    await rec.status("alice", missed, "MISSED", timeout=2)
    gw.manager.accounts.get("alice").unanswered = "voicemail"
    to_vm = gw.embedded.remote_call("answerer", "alice")
    await rec.status("alice", to_vm, "VM_SENT", timeout=3)
    unhandled = gw.embedded.remote_call("answerer", "bob")
    gw.manager.calls.incoming_unhandled("bob", unhandled)  # the originate failed: no need to wait
    assert rec.statuses("bob", unhandled) == ["RINGING", "MISSED"]


def test_200_simultaneous_calls_on_one_account(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path, CALL_ACCOUNTS + CALL_USERS, GENERAL) as gw:
            rec = Recorder(gw.bus)
            dial = Dialplan(gw.agi.port)
            ids = await asyncio.gather(*(start(dial, "alice", "echo123") for _ in range(200)))
            assert len(set(ids)) == 200
            await asyncio.gather(*(rec.status("alice", i, "INPROGRESS") for i in ids))
            assert len(gw.manager.calls.of("alice")) == 200
            listed = await dial("alice", "calls-list")
            assert listed["SKYPE_CALLS_COUNT"] == "200"
            results = await asyncio.gather(*(dial("alice", "call-hangup", call_id=i) for i in ids))
            assert all(r["SKYPE_STATUS"] == "SUCCESS" for r in results)
            assert gw.manager.calls.live == {}
            history = gw.store.calls("alice")
            assert len(history) == 200 and {r["status"] for r in history} == {"FINISHED"}
    run(body())
