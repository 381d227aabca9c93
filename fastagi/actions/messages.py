"""Messaging actions: chatmessage-send, chat-leave, sms-send, file-send."""

from __future__ import annotations

from ..model import errors
from ..model.capabilities import Feature
from .context import ActionContext
from .registry import Argument, action, file_name, phone, user_name, text

USER = Argument("user-name", "the user: a Skype name, or a bare JID on XMPP", user_name)


@action("chatmessage-send", "Send a chat message to a user, in the open dialog chat or a new one.",
        arguments=(USER, Argument("message-body", "the text (use ${URIENCODE()} in the query string)", text)),
        returns=("chat-name",), errors=(errors.UNKNOWN_USER, errors.NOT_AUTHORIZED), needs=Feature.CHAT)
async def chatmessage_send(ctx: ActionContext, user_name: str, message_body: str) -> dict[str, str]:
    return {"chat-name": await ctx.manager.contacts.send_chat_message(ctx.account, user_name, message_body)}


@action("chat-leave", "Leave (close) a chat of the account.",
        arguments=(Argument("chat-name", "the chat, e.g. #alice/$bob;9f0c…", text),), errors=(errors.UNKNOWN_CHAT,),
        needs=Feature.CHAT)
async def chat_leave(ctx: ActionContext, chat_name: str) -> None:
    ctx.manager.contacts.leave_chat(ctx.account, chat_name)


@action("sms-send", "Send an SMS to a mobile number; it costs SkypeOut credit.",
        arguments=(Argument("sms-number", "the mobile number, international format (+…)", phone),
                   Argument("sms-body", "the text", text)),
        errors=(errors.CANNOT_SEND,), needs=Feature.SMS)
async def sms_send(ctx: ActionContext, sms_number: str, sms_body: str) -> None:
    await ctx.manager.deliveries.send_sms(ctx.account, sms_number, sms_body)


@action("file-send", "Send a file (under the media folder) to a user; a copy lands in their incoming folder.",
        arguments=(USER, Argument("file", "the file: relative to media_dir, or absolute inside a media folder", file_name)),
        errors=(errors.FILE_MISSING, errors.UNKNOWN_USER, errors.NOT_AUTHORIZED), needs=Feature.FILES)
async def file_send(ctx: ActionContext, user_name: str, file: str) -> None:
    with ctx.media.open(file) as source:
        ctx.media.check_size(file, source)
        await ctx.manager.deliveries.send_file(ctx.account, user_name, source)
