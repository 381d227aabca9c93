"""The one error type that carries a seed error code up to `SKYPE_ERROR`."""

from __future__ import annotations


class SkypeError(Exception):
    """A failure the dialplan sees: `code` goes to SKYPE_ERROR, `text` to SKYPE_ERROR_TEXT."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


INVALID_ARGUMENT = "invalid-argument"
UNKNOWN_ACTION = "unknown_action"
UNKNOWN_ACCOUNT = "unknown_account"
UNKNOWN_USER = "unknown_user"
UNKNOWN_CALL = "unknown_call_error"
INVALID_CALL_STATUS = "invalid_call_status"
NO_CALLS_FOUND = "no_calls_found"
CANNOT_TRANSFER = "cannot_transfer"
CANNOT_SEND = "cannot_send"
NOT_AUTHORIZED = "not_authorized"
NOT_SUPPORTED = "not_supported"
NETWORK_UNAVAILABLE = "network_unavailable"
FILE_MISSING = "file_missing"
FILE_EXISTS = "file_exists"
UNKNOWN_CHAT = "unknown_chat"
INTERNAL_ERROR = "internal_error"
