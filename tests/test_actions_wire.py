"""The exact `SET VARIABLE` lines Asterisk receives for each account, contact and message action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import running_gateway, run
from doubles.asterisk_agi import FakeAsterisk

OK = ['SET VARIABLE SKYPE_STATUS "SUCCESS"', 'SET VARIABLE SKYPE_ERROR ""', 'SET VARIABLE SKYPE_ERROR_TEXT ""']


def failed(code: str, text: str) -> list[str]:
    return ['SET VARIABLE SKYPE_STATUS "FAILED"', f'SET VARIABLE SKYPE_ERROR "{code}"', f'SET VARIABLE SKYPE_ERROR_TEXT "{text}"']


GET_USER_CAROL = OK + [f'SET VARIABLE SKYPE_{k} "{v}"' for k, v in [
    ("USER_HANDLE", "carol"), ("USER_FULLNAME", "Carol Remote"), ("USER_DISPNAME", "Carol Remote"),
    ("USER_BIRTHDAY", ""), ("USER_SEX", "UNKNOWN"), ("USER_LANGUAGE", ""), ("USER_COUNTRY", "Italy"),
    ("USER_PROVINCE", ""), ("USER_CITY", ""), ("USER_PHONE_HOME", ""), ("USER_PHONE_OFFICE", ""),
    ("USER_PHONE_MOBILE", ""), ("USER_HOMEPAGE", ""), ("USER_ISAUTHORIZED", "False"), ("USER_ISBLOCKED", "False"),
    ("USER_ONLINESTATUS", "ONLINE"), ("USER_MOOD_TEXT", ""), ("USER_RICH_MOOD_TEXT", ""), ("USER_TIMEZONE", ""),
    ("USER_BUDDYSTATUS", "0")]]
GET_USER_EMPTY = [f'SET VARIABLE {line.split()[2]} ""' for line in GET_USER_CAROL[3:]]

CASES = [
    ("list-registered", ["GET VARIABLE SKYPE_REGISTERED_COUNT"] + OK + [
        'SET VARIABLE SKYPE_REGISTERED_COUNT "2"', 'SET VARIABLE SKYPE_REGISTERED_1 "alice"', 'SET VARIABLE SKYPE_REGISTERED_2 "bob"']),
    ("get-profile-balance?account=bob", OK + ['SET VARIABLE SKYPE_BALANCE "5"', 'SET VARIABLE SKYPE_BALANCE_CURRENCY "USD"']),
    ("get-profile-balance?account=nobody", failed("unknown_account", "no account 'nobody' is registered here")
     + ['SET VARIABLE SKYPE_BALANCE ""', 'SET VARIABLE SKYPE_BALANCE_CURRENCY ""']),
    ("get-user?account=alice&user-name=carol", GET_USER_CAROL),
    ("get-user?account=alice&user-name=ghost9", failed("unknown_user", "no Skype user named 'ghost9'") + GET_USER_EMPTY),
    ("get-user?account=alice&user=carol", failed("invalid-argument", "unknown argument 'user' for get-user (accepted: user-name, account)") + GET_USER_EMPTY),
    ("user-set-auth?account=alice&user-name=carol&status=True", OK),
    ("user-set-auth?account=alice&user-name=carol&status=yes", failed("invalid-argument", "status: 'yes' must be True or False")),
    ("user-set-auth?account=alice&user-name=ghost9&status=False", failed("unknown_user", "no Skype user named 'ghost9'")),
    ("user-set-block?account=alice&user-name=carol&status=false", OK),
    ("user-set-block?account=alice&user-name=ghost9&status=true", failed("unknown_user", "no Skype user named 'ghost9'")),
    ("user-set-buddy?account=alice&user-name=carol&status=TRUE", OK),
    ("user-set-buddy?account=alice&user-name=ghost9&status=TRUE", failed("unknown_user", "no Skype user named 'ghost9'")),
    ("chatmessage-send?account=alice&user-name=carol&message-body=hi", OK + ['SET VARIABLE SKYPE_CHAT_NAME "#alice/$carol;*"']),
    ("chatmessage-send?account=alice&user-name=ghost9&message-body=hi", failed("unknown_user", "no Skype user named 'ghost9'")
     + ['SET VARIABLE SKYPE_CHAT_NAME ""']),
    ("chat-leave?account=alice&chat-name=%23nope", failed("unknown_chat", "alice has no chat named '#nope'")),
    ("sms-send?account=alice&sms-number=%2B393331234567&sms-body=hello", OK),
    ("sms-send?account=bob&sms-number=%2B393331234567&sms-body=hello",
     failed("cannot_send", "SkypeOut credit too low: the SMS costs 10, balance is 5 USD")),
    ("file-send?account=alice&user-name=bob&file=gone.txt", failed("file_missing", "gone.txt does not exist")),
]


@pytest.mark.parametrize("script, expected", CASES, ids=[c[0] for c in CASES])
def test_exact_lines(tmp_path: Path, script: str, expected: list[str]) -> None:
    async def body() -> None:
        async with running_gateway(tmp_path) as gw:
            result = await FakeAsterisk(gw.agi.port).agi(script)
            assert len(result.commands) == len(expected), result.commands
            for sent, wanted in zip(result.commands, expected):
                pattern = re.escape(wanted).replace(r"\*", "[0-9a-f]{16}")
                assert re.fullmatch(pattern, sent), (sent, wanted)
            assert result.agistatus == "SUCCESS"
    run(body())
