"""Contact actions: get-user, user-set-auth, user-set-block, user-set-buddy."""

from __future__ import annotations

from ..model import errors
from ..model.capabilities import Feature
from .context import ActionContext
from .registry import Argument, action, boolean, user_name

USER = Argument("user-name", "the user: a Skype name, or a bare JID on XMPP", user_name)


def _status(doc: str) -> Argument:
    return Argument("status", doc, boolean)


GET_USER_RETURNS = (
    "user-handle", "user-fullname", "user-dispname", "user-birthday", "user-sex", "user-language",
    "user-country", "user-province", "user-city", "user-phone-home", "user-phone-office",
    "user-phone-mobile", "user-homepage", "user-isauthorized", "user-isblocked", "user-onlinestatus",
    "user-mood-text", "user-rich-mood-text", "user-timezone", "user-buddystatus",
)


@action("get-user", "Return the Skype profile of a user, and how it stands in the account's contacts.",
        arguments=(USER,), returns=GET_USER_RETURNS, errors=(errors.UNKNOWN_USER,), needs=Feature.PROFILES)
async def get_user(ctx: ActionContext, user_name: str) -> dict[str, object]:
    profile, contact = await ctx.manager.contacts.user(ctx.account, user_name)
    flags = {"user-isauthorized": contact.authorized, "user-isblocked": contact.blocked}
    return {
        "user-handle": profile.handle, "user-fullname": profile.fullname,
        "user-dispname": profile.shown_name, "user-birthday": profile.birthday,
        "user-sex": profile.sex.upper(), "user-language": profile.language, "user-country": profile.country,
        "user-province": profile.province, "user-city": profile.city, "user-phone-home": profile.phone_home,
        "user-phone-office": profile.phone_office, "user-phone-mobile": profile.phone_mobile,
        "user-homepage": profile.homepage, "user-onlinestatus": profile.online_status,
        "user-mood-text": profile.mood_text, "user-rich-mood-text": profile.rich_mood_text or profile.mood_text,
        "user-timezone": profile.timezone, "user-buddystatus": contact.buddy,
        **{k: "True" if v else "False" for k, v in flags.items()},
    }


@action("user-set-auth", "Authorise (True) or refuse (False) a user who asked to add the account to their contacts.",
        arguments=(USER, _status("True: the request is acknowledged; False: refused")), errors=(errors.UNKNOWN_USER,),
        needs=Feature.CONTACTS)
async def user_set_auth(ctx: ActionContext, user_name: str, status: bool) -> None:
    await ctx.manager.contacts.set_auth(ctx.account, user_name, status)


@action("user-set-block", "Block (True) or unblock (False) a user: a blocked user cannot message, call or send files.",
        arguments=(USER, _status("True: blacklisted; False: not")), errors=(errors.UNKNOWN_USER,),
        needs=Feature.BLOCKING)
async def user_set_block(ctx: ActionContext, user_name: str, status: bool) -> None:
    await ctx.manager.contacts.set_block(ctx.account, user_name, status)


@action("user-set-buddy", "Add (True, sends a buddy request) or remove (False) a user in the account's contacts.",
        arguments=(USER, _status("True: added; False: removed")), errors=(errors.UNKNOWN_USER,),
        needs=Feature.CONTACTS)
async def user_set_buddy(ctx: ActionContext, user_name: str, status: bool) -> None:
    await ctx.manager.contacts.set_buddy(ctx.account, user_name, status)
