"""Call actions: start, answer, hold, resume, hang up, DTMF, transfer, voicemail, conference, lookups."""

from __future__ import annotations

from ..model import errors
from ..model.calls import CallEvent
from ..model.capabilities import Feature
from .context import ActionContext
from .registry import Argument, ListResult, Row, action, call_id, dtmf, user_name

CALL = Argument("call-id", "the call", call_id)
USER = Argument("user-name", "the user: a Skype name, or a bare JID on XMPP", user_name)
CALL_ERRORS = (errors.UNKNOWN_CALL, errors.INVALID_CALL_STATUS)


@action("call-start", "Start a call to a Skype user; returns its id and the UUID that binds an AudioSocket to it.",
        arguments=(USER,), returns=("call-id", "call-uuid"),
        errors=(errors.UNKNOWN_USER, errors.NOT_AUTHORIZED, errors.UNKNOWN_CALL), needs=Feature.CALLS)
async def call_start(ctx: ActionContext, user_name: str) -> dict[str, object]:
    call = await ctx.manager.calls.start(ctx.account, user_name)
    call.asterisk_channel = ctx.channel  # DTMF from the Skype user is played there
    return {"call-id": call.id, "call-uuid": call.uuid}


@action("call-hangup", "Hang up a call (cancel it while it rings, refuse it when it rings here).",
        arguments=(CALL,), errors=CALL_ERRORS, needs=Feature.CALLS)
async def call_hangup(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.calls.hangup(ctx.account, call_id)


@action("call-answer", "Answer an incoming ringing call.", arguments=(CALL,), errors=CALL_ERRORS, needs=Feature.CALLS)
async def call_answer(ctx: ActionContext, call_id: int) -> None:
    call = await ctx.manager.calls.answer(ctx.account, call_id)
    call.asterisk_channel = ctx.channel  # DTMF from the Skype user is played there


@action("call-hold", "Put a call in progress on hold.", arguments=(CALL,), errors=CALL_ERRORS, needs=Feature.CALLS)
async def call_hold(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.calls.local(ctx.account, call_id, CallEvent.LOCAL_HOLD)


@action("call-resume", "Resume a call held from this side.", arguments=(CALL,), errors=CALL_ERRORS, needs=Feature.CALLS)
async def call_resume(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.calls.local(ctx.account, call_id, CallEvent.LOCAL_RESUME)


@action("call-dtmf", "Send DTMF digits to the remote user of a call in progress.",
        arguments=(CALL, Argument("code", "digits 0-9, * and #", dtmf)), errors=CALL_ERRORS, needs=Feature.DTMF)
async def call_dtmf(ctx: ActionContext, call_id: int, code: str) -> None:
    await ctx.manager.calls.send_dtmf(ctx.account, call_id, code)


@action("call-transfer", "Transfer a call to another Skype user.",
        arguments=(CALL, USER), errors=(errors.UNKNOWN_CALL, errors.CANNOT_TRANSFER), needs=Feature.CALL_TRANSFER)
async def call_transfer(ctx: ActionContext, call_id: int, user_name: str) -> None:
    await ctx.manager.calls.transfer(ctx.account, call_id, user_name)


@action("call-vm", "Send a ringing incoming call to the account's voicemail (when enabled).",
        arguments=(CALL,), errors=CALL_ERRORS, needs=Feature.VOICEMAIL)
async def call_vm(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.calls.voicemail(ctx.account, call_id)


@action("call-conference", "Add a Skype user to a call in progress; returns the new call's id.",
        arguments=(CALL, Argument("conference-user-name", "the user to add", user_name)),
        returns=("conference-call-id",), errors=(*CALL_ERRORS, errors.UNKNOWN_USER, errors.NOT_AUTHORIZED),
        needs=Feature.CONFERENCE)
async def call_conference(ctx: ActionContext, call_id: int, conference_user_name: str) -> dict[str, object]:
    call = await ctx.manager.calls.conference(ctx.account, call_id, conference_user_name)
    return {"conference-call-id": call.id}


@action("get-call-id", "Return the id of the account's call with a Skype user (the one in progress first).",
        arguments=(USER,), returns=("call-id",), errors=(errors.NO_CALLS_FOUND,))
async def get_call_id(ctx: ActionContext, user_name: str) -> dict[str, object]:
    return {"call-id": ctx.manager.calls.find(ctx.account, user_name).id}


@action("calls-list", "List the account's live calls: partner, id and status of each.",
        returns_list=ListResult("calls", ("id", "status")))
async def calls_list(ctx: ActionContext) -> list[Row]:
    calls = sorted(ctx.manager.calls.of(ctx.account), key=lambda c: c.id)
    return [Row(c.partner, {"id": str(c.id), "status": c.status.value}) for c in calls]
