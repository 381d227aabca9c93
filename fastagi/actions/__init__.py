"""The actions: each module declares its actions in `registry.ACTIONS` on import."""

from . import accounts, calls, media, messages, users  # noqa: F401 - imported to declare the actions
from .registry import ACTIONS

__all__ = ["ACTIONS"]
