"""Random sequences of call actions and remote events against the call model's invariants."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Recorder, running_gateway
from fastagi.model.errors import SkypeError
from fastagi.model.calls import ENDED, TRANSITIONS, CallEvent, CallStatus
from fastagi.network.embedded import Timing

TINY = "ring_delay = 0.002\nanswer_delay = 0.004\n"
USERS = "".join(f"\n[{n}]\ntype = user\nbehaviour = {b}\n{TINY}" for n, b in [
    ("echo123", "echo"), ("answerer", "answer"), ("busybody", "busy"), ("silent", "noanswer"),
    ("refuser", "refuse"), ("away1", "offline"), ("vmuser", "voicemail")])
ACCOUNTS = "\n[alice]\ntype = account\n\n[bob]\ntype = account\nunanswered = voicemail\n\n[carl]\ntype = account\n"
HANDLES = ["alice", "bob", "carl", "echo123", "answerer", "busybody", "silent", "refuser", "away1", "vmuser"]
REACHABLE = {(before, target) for (before, _), target in TRANSITIONS.items()}

step = st.one_of(
    st.tuples(st.just("start"), st.sampled_from(["alice", "bob", "carl"]), st.sampled_from(HANDLES)),
    st.tuples(st.sampled_from(["answer", "hold", "resume", "hangup", "dtmf", "vm"]),
              st.sampled_from(["alice", "bob", "carl"]), st.integers(0, 7)),
    st.tuples(st.sampled_from(["transfer", "conference"]), st.sampled_from(["alice", "bob", "carl"]),
              st.tuples(st.integers(0, 7), st.sampled_from(HANDLES))),
    st.tuples(st.just("remote-call"), st.sampled_from(["alice", "bob", "carl"]), st.sampled_from(["answerer", "echo123"])),
    st.tuples(st.just("wait"), st.just(""), st.sampled_from([0.0, 0.003, 0.01, 0.03])),
)


async def apply(gw, kind: str, account: str, arg) -> None:  # type: ignore[no-untyped-def]
    m = gw.manager.calls
    if kind == "start":
        await m.start(account, arg)
        return
    if kind == "remote-call":
        gw.embedded.remote_call(arg, account)
        return
    if kind == "wait":
        await asyncio.sleep(arg)
        return
    index, target = arg if isinstance(arg, tuple) else (arg, None)
    ids = sorted(c.id for c in m.of(account))
    if not ids:
        return
    call_id = ids[index % len(ids)]
    operations = {
        "answer": lambda: m.answer(account, call_id),
        "hold": lambda: m.local(account, call_id, CallEvent.LOCAL_HOLD),
        "resume": lambda: m.local(account, call_id, CallEvent.LOCAL_RESUME),
        "hangup": lambda: m.hangup(account, call_id),
        "dtmf": lambda: m.send_dtmf(account, call_id, "5"),
        "vm": lambda: m.voicemail(account, call_id),
        "transfer": lambda: m.transfer(account, call_id, target),
        "conference": lambda: m.conference(account, call_id, target),
    }
    await operations[kind]()


def check_invariants(gw, rec: Recorder) -> None:  # type: ignore[no-untyped-def]
    # every status change seen on the bus is a transition of the table
    last: dict[tuple[str, str], CallStatus] = {}
    for event in rec.events:
        if event.kind != "CallStatus":
            continue
        key = (event.account, event.fields["CallID"])
        status = CallStatus(event.fields["Status"])
        before = last.get(key, CallStatus.UNPLACED)
        assert before == status or (before, status) in REACHABLE, (key, before, status)
        last[key] = status
    for call in gw.manager.calls.live.values():
        assert call.status not in ENDED, call
        for other in ("alice", "bob", "carl"):
            if other != call.account:
                try:
                    gw.manager.calls.get(other, call.id)
                except SkypeError as exc:
                    assert exc.code == "unknown_call_error"
                else:
                    raise AssertionError(f"{other} sees call {call.id} of {call.account}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=25))
def test_random_call_sequences_keep_the_invariants(steps) -> None:  # type: ignore[no-untyped-def]
    async def body(folder: Path) -> None:
        async with running_gateway(folder, ACCOUNTS + USERS, "ring_timeout = 0.05") as gw:
            gw.embedded.timing = Timing(vm_greeting=0.005, vm_message=0.01, vm_upload=0.002, ring_timeout=0.05)
            rec = Recorder(gw.bus)
            for kind, account, arg in steps:
                try:
                    await apply(gw, kind, account, arg)
                except SkypeError:
                    pass  # refused requests are fine; the state must stay sound
                check_invariants(gw, rec)
            for _ in range(100):  # end everything, also a call a transfer places a moment later
                for call in list(gw.manager.calls.live.values()):
                    try:
                        await gw.manager.calls.hangup(call.account, call.id)
                    except SkypeError:
                        pass
                if not gw.manager.calls.live and not gw.embedded._legs:
                    break
                await asyncio.sleep(0.01)
            check_invariants(gw, rec)
            assert gw.manager.calls.live == {}, gw.manager.calls.live
            assert gw.embedded._legs == {}, gw.embedded._legs  # no call object leaks
            ended = {(e.account, e.fields["CallID"]) for e in rec.events if e.kind == "CallStatus" and CallStatus(e.fields["Status"]) in ENDED}
            assert {(r["account"], str(r["id"])) for r in gw.store.calls()} == ended

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(body(Path(folder)))
