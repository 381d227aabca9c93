"""System-wide and profile actions: list-registered, get-profile-balance."""

from __future__ import annotations

from ..model.capabilities import Feature
from .context import ActionContext
from .registry import ListResult, Row, action


@action("list-registered", "List the Skype accounts registered on this server.",
        returns_list=ListResult("registered"), uses_account=False)
async def list_registered(ctx: ActionContext) -> list[Row]:
    return [Row(name) for name in ctx.manager.accounts.names()]


@action("get-profile-balance", "Return the account's SkypeOut credit (hundredths: 1.05 EUR is 105) and currency.",
        returns=("balance", "balance-currency"), needs=Feature.BALANCE)
async def get_profile_balance(ctx: ActionContext) -> dict[str, object]:
    balance, currency = ctx.manager.deliveries.balance(ctx.account)
    return {"balance": balance, "balance-currency": currency}
