"""A FastAGI client that behaves like Asterisk 22's res_agi (see tests/captures/agi-session.txt).

It sends the exact environment block, then answers commands the way Asterisk does:
`SET VARIABLE` parsed with res_agi's own `parse_args` rules, `GET VARIABLE`, 510 for
unknown commands, the multi-line 520 usage error, 511 after a hang-up, an unsolicited
`HANGUP` line before a chosen reply. It reads commands like Asterisk (stdio `fgets`
buffered, but waiting with `poll()` on the socket): several commands arriving in one
write are answered one per wake-up, so pipelining without a half-close stalls here as
it does on a real Asterisk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

DEAD_SAFE = ("SET VARIABLE", "GET VARIABLE", "GET FULL VARIABLE", "EXEC", "VERBOSE", "DATABASE", "NOOP")
USAGE_520 = [
    "520-Invalid command syntax.  Proper usage follows:",
    "Usage: SET VARIABLE <variablename> <value>",
    "520 End of proper usage.",
]


def parse_args(line: str) -> list[str]:
    """res_agi.c `parse_args`: quotes group, a backslash makes the next character literal."""
    args: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
                args.append("")
            continue
        if char in " \t" and not quoted and not escaped:
            if current is not None:
                args[-1] = "".join(current)
                current = None
            continue
        if char == "\\" and not escaped:
            escaped = True
            continue
        if current is None:
            current = []
            args.append("")
        current.append(char)
        escaped = False
    if current is not None:
        args[-1] = "".join(current)
    return args


def environment(script: str | None, args: list[str], uniqueid: str, channel: str, port: int) -> bytes:
    lines = ["agi_network: yes"]
    if script is not None:
        lines.append(f"agi_network_script: {script}")
    lines += [
        f"agi_request: agi://127.0.0.1:{port}/{script or ''}",
        f"agi_channel: {channel}", "agi_language: en", "agi_type: Local", f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.11.0-rc1", "agi_callerid: unknown", "agi_calleridname: unknown",
        "agi_callingpres: 67", "agi_callingani2: 0", "agi_callington: 0", "agi_callingtns: 0",
        "agi_dnid: unknown", "agi_rdnis: unknown", "agi_context: cap", "agi_extension: s",
        "agi_priority: 2", "agi_enhanced: 0.0", "agi_accountcode: ", "agi_threadid: 140016372795072",
    ]
    lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


@dataclass
class AgiRun:
    """What one AGI() call left behind."""

    agistatus: str
    variables: dict[str, str]
    commands: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    def skype(self, prefix: str = "SKYPE_") -> dict[str, str]:
        return {k: v for k, v in self.variables.items() if k.startswith(prefix)}

    @property
    def set_lines(self) -> list[str]:
        return [c for c in self.commands if c.startswith("SET VARIABLE ")]


class FakeAsterisk:
    """One channel's variables, shared across several AGI() calls like a real dialplan."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.variables: dict[str, str] = {"CHANNEL": "Local/s@cap-00000000;2"}
        self._uniqueid = 0

    async def agi(
        self, script: str | None, *args: str, hangup_before_reply: int | None = None, dead: bool = False
    ) -> AgiRun:
        """Run `AGI(agi://host:port/script,args…)`; `hangup_before_reply=N` hangs up before reply N (1-based)."""
        self._uniqueid += 1
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 2)
        except (OSError, asyncio.TimeoutError):
            return AgiRun("FAILURE", dict(self.variables))
        run = AgiRun("SUCCESS", self.variables)
        writer.write(environment(script, list(args), f"1795732263.{self._uniqueid}", self.variables["CHANNEL"], self.port))
        await writer.drain()
        hung_up = dead
        buffer = b""
        eof = False
        try:
            while True:
                if b"\n" not in buffer or not eof:
                    # poll(): wait until the socket is readable (new bytes or EOF)
                    chunk = await asyncio.wait_for(reader.read(65536), 10)
                    eof = eof or not chunk
                    buffer += chunk
                if b"\n" not in buffer:
                    if eof:
                        break
                    continue
                line, buffer = buffer.split(b"\n", 1)  # fgets(): one line per wake-up
                command = line.decode()
                run.commands.append(command)
                if hangup_before_reply == len(run.commands):
                    hung_up = True
                    writer.write(b"HANGUP\n")
                for reply in self._answer(command, hung_up):
                    run.replies.append(reply)
                    writer.write(reply.encode() + b"\n")
                if not eof:
                    await writer.drain()
        except (ConnectionError, asyncio.TimeoutError):
            run.agistatus = "FAILURE"
        finally:
            writer.close()
        if hung_up and run.agistatus == "SUCCESS":
            run.agistatus = "HANGUP"
        run.variables = dict(self.variables)
        self.variables["AGISTATUS"] = run.agistatus
        return run

    def _answer(self, command: str, hung_up: bool) -> list[str]:
        upper = command.upper()
        if hung_up and not upper.startswith(DEAD_SAFE):
            return ["511 Command Not Permitted on a dead channel or intercept routine"]
        argv = parse_args(command)
        if upper.startswith("SET VARIABLE"):
            if len(argv) != 4:
                return USAGE_520
            self.variables[argv[2]] = argv[3]
            return ["200 result=1"]
        if upper.startswith("GET VARIABLE"):
            value = self.variables.get(argv[2]) if len(argv) == 3 else None
            return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]
        if upper.startswith("VERBOSE") or upper.startswith("NOOP"):
            return ["200 result=1"]
        return ["510 Invalid or unknown command"]
