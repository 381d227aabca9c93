"""Media actions: play a WAV to the remote user, record the remote user into a new WAV."""

from __future__ import annotations

import asyncio

from ..media.wav import WavPlayer, read_wav
from ..model import errors
from ..model.capabilities import Feature
from ..model.errors import SkypeError
from .context import ActionContext
from .registry import Argument, action, call_id, file_name

CALL = Argument("call-id", "the call", call_id)


@action("call-set-input-file", "Play a WAV to the remote user instead of the voice channel (from its start; then silence).",
        arguments=(CALL, Argument("file-name", "the WAV: relative to media_dir, or absolute inside a media folder", file_name)),
        errors=(errors.UNKNOWN_CALL, errors.FILE_MISSING), needs=Feature.CALLS)
async def call_set_input_file(ctx: ActionContext, call_id: int, file_name: str) -> None:
    ctx.manager.calls.get(ctx.account, call_id)
    with ctx.media.open(file_name) as wav:
        samples = await asyncio.to_thread(read_wav, wav.fd, wav.path)  # decoding a long file must not stall the clock
    ctx.manager.calls.get(ctx.account, call_id)  # it may have ended meanwhile
    ctx.call_media.port(ctx.account, call_id).set_source(WavPlayer(samples))


@action("call-set-output-file", "Record the remote user's voice into a new WAV until the call ends (never overwrites).",
        arguments=(CALL, Argument("file-name", "the new WAV: relative to media_dir, or absolute inside a media folder", file_name)),
        errors=(errors.UNKNOWN_CALL, errors.FILE_EXISTS), needs=Feature.CALLS)
async def call_set_output_file(ctx: ActionContext, call_id: int, file_name: str) -> None:
    ctx.manager.calls.get(ctx.account, call_id)
    created = ctx.media.create(file_name)
    try:
        ctx.call_media.record(ctx.account, call_id, created.path, ctx.media.record_rate, fd=created.fd)
    except OSError as exc:
        raise SkypeError(errors.INVALID_ARGUMENT, f"{file_name}: cannot create: {exc.strerror}") from None
