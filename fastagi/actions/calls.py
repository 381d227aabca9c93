"""Call actions: start, answer, hold, resume, hang up, DTMF, transfer, voicemail, conference, lookups."""

from __future__ import annotations

from .. import errors
from ..manager.calls import CallEvent
from .context import ActionContext
from .registry import Argument, ListResult, Row, action, call_id, dtmf, skype_name

CALL = Argument("call-id", "the call", call_id)
USER = Argument("user-name", "the Skype user", skype_name)
CALL_ERRORS = (errors.UNKNOWN_CALL, errors.INVALID_CALL_STATUS)


@action("call-start", "Start a call to a Skype user; returns its id and the UUID that binds an AudioSocket to it.",
        arguments=(USER,), returns=("call-id", "call-uuid"),
        errors=(errors.UNKNOWN_USER, errors.NOT_AUTHORIZED, errors.UNKNOWN_CALL))
async def call_start(ctx: ActionContext, user_name: str) -> dict[str, object]:
    call = await ctx.manager.start_call(ctx.account, user_name)
    call.asterisk_channel = ctx.channel  # DTMF from the Skype user is played there
    return {"call-id": call.id, "call-uuid": call.uuid}


@action("call-hangup", "Hang up a call (cancel it while it rings, refuse it when it rings here).",
        arguments=(CALL,), errors=CALL_ERRORS)
async def call_hangup(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.hangup(ctx.account, call_id)


@action("call-answer", "Answer an incoming ringing call.", arguments=(CALL,), errors=CALL_ERRORS)
async def call_answer(ctx: ActionContext, call_id: int) -> None:
    call = await ctx.manager.answer(ctx.account, call_id)
    call.asterisk_channel = ctx.channel  # DTMF from the Skype user is played there


@action("call-hold", "Put a call in progress on hold.", arguments=(CALL,), errors=CALL_ERRORS)
async def call_hold(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.local(ctx.account, call_id, CallEvent.LOCAL_HOLD)


@action("call-resume", "Resume a call held from this side.", arguments=(CALL,), errors=CALL_ERRORS)
async def call_resume(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.local(ctx.account, call_id, CallEvent.LOCAL_RESUME)


@action("call-dtmf", "Send DTMF digits to the remote user of a call in progress.",
        arguments=(CALL, Argument("code", "digits 0-9, * and #", dtmf)), errors=CALL_ERRORS)
async def call_dtmf(ctx: ActionContext, call_id: int, code: str) -> None:
    await ctx.manager.send_dtmf(ctx.account, call_id, code)


@action("call-transfer", "Transfer a call to another Skype user.",
        arguments=(CALL, USER), errors=(errors.UNKNOWN_CALL, errors.CANNOT_TRANSFER))
async def call_transfer(ctx: ActionContext, call_id: int, user_name: str) -> None:
    await ctx.manager.transfer(ctx.account, call_id, user_name)


@action("call-vm", "Send a ringing incoming call to the account's voicemail (when enabled).",
        arguments=(CALL,), errors=CALL_ERRORS)
async def call_vm(ctx: ActionContext, call_id: int) -> None:
    await ctx.manager.voicemail(ctx.account, call_id)


@action("call-conference", "Add a Skype user to a call in progress; returns the new call's id.",
        arguments=(CALL, Argument("conference-user-name", "the Skype user to add", skype_name)),
        returns=("conference-call-id",), errors=(*CALL_ERRORS, errors.UNKNOWN_USER, errors.NOT_AUTHORIZED))
async def call_conference(ctx: ActionContext, call_id: int, conference_user_name: str) -> dict[str, object]:
    call = await ctx.manager.conference(ctx.account, call_id, conference_user_name)
    return {"conference-call-id": call.id}


@action("get-call-id", "Return the id of the account's call with a Skype user (the one in progress first).",
        arguments=(USER,), returns=("call-id",), errors=(errors.NO_CALLS_FOUND,))
async def get_call_id(ctx: ActionContext, user_name: str) -> dict[str, object]:
    return {"call-id": ctx.manager.find_call(ctx.account, user_name).id}


@action("calls-list", "List the account's live calls: partner, id and status of each.",
        returns_list=ListResult("calls", ("id", "status")))
async def calls_list(ctx: ActionContext) -> list[Row]:
    calls = sorted(ctx.manager.live_calls(ctx.account), key=lambda c: c.id)
    return [Row(c.partner, {"id": str(c.id), "status": c.status.value}) for c in calls]
