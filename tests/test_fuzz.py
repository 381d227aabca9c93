"""Fuzzing of the four sans-I/O protocol cores: AGI, AMI framing, AudioSocket framing, WAV.

The properties hold for any input. Bytes cut at any boundaries give what the same bytes
give in one piece, and are refused only with the module's own error (`AgiProtocolError`,
`ProtocolError`, `MediaFileError`; the AMI parser refuses nothing); whatever the encoders
produce parses back to what was encoded; buffers stay within their limits.

Here each property runs a bounded, reproducible set of examples (`CI`);
`python -m bench.fuzz` runs the same `PROPERTIES` far longer, with random seeds.
"""

from __future__ import annotations

import itertools
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastagi.agi.protocol import (
    MAX_COMMAND_BYTES,
    AgiConnection,
    AgiProtocolError,
    Environment,
    Event,
    Hangup,
    Limits,
    Reply,
    State,
    encode_command,
    parse_reply,
    set_variable,
)
from fastagi.ami.protocol import (
    MAX_HEADERS,
    MAX_LINE,
    AmiParser,
    encode_action,
    escape_value,
    fit_value,
    unescape_value,
    value_budget,
)
from fastagi.audiosocket import protocol as codec
from fastagi.audiosocket.protocol import AUDIO_RATES, HEADER, AudioSocketParser, Frame, Kind, ProtocolError
from fastagi.media import wav
from fastagi.media.errors import MediaFileError
from fastagi.model.audio import ENGINE_RATE
from fastagi.media.wav import WavFormat, WavHeader, decode_wav, parse_wav_header, repair_wav_header, wav_header
from doubles.asterisk_agi import parse_args

CI = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],  # a loaded CI machine generates slowly
)
"""Bounded and reproducible: every run tries the same examples."""


@dataclass(frozen=True)
class Property:
    """A property with its strategies, so that bench.fuzz can run it with other settings."""

    body: Callable[..., None]
    strategies: tuple[st.SearchStrategy[Any], ...]


PROPERTIES: dict[str, Property] = {}


def fuzz(*strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`@given(*strategies)` with the CI settings, the property kept in `PROPERTIES`.

    Explicit `@example`s go below this decorator, on the property itself.
    """

    def register(body: Callable[..., None]) -> Callable[..., None]:
        PROPERTIES[body.__name__] = Property(body, strategies)
        return CI(given(*strategies)(body))

    return register


# ---------------------------------------------------------------- cutting streams

CUTS = st.lists(st.integers(min_value=0, max_value=2**16), max_size=12)
Outcome = tuple[list[Any], bool]
"""What a stream gave: its events, and whether it was refused."""


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at `cuts` (offsets modulo its length + 1) into non-empty pieces."""
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def one_by_one(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def assert_same_outcome(cut: Outcome, reference: Outcome) -> None:
    """`reference` was fed byte by byte, so it reports every event as early as it can.

    A refused stream is refused however it is cut; the events of the chunk holding the
    fault are lost with it, so the cut stream reports a prefix of the reference's events.
    """
    events, refused = cut
    assert refused == reference[1]
    if refused:
        assert events == reference[0][: len(events)]
    else:
        assert events == reference[0]


ANY_TEXT = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])))
"""Any str, lone surrogates included (what a JSON decoder can hand over)."""
WIRE_CHARS = st.characters(exclude_categories=["Cs"])
"""What UTF-8 can carry (a plain `characters()` lets a lone surrogate through now and then)."""
LINE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\n")
"""What one line sent in UTF-8 can hold."""
DIGIT_RUNS = st.integers(1, 5000).map(lambda n: b"9" * n)
"""Long numbers: where a parser converts digits, their length is a limit of its own."""


def pieces(fragments: list[bytes]) -> st.SearchStrategy[bytes]:
    """Known fragments, long digit runs, random bytes and text, run together."""
    piece = st.one_of(
        st.sampled_from(fragments), DIGIT_RUNS, st.binary(max_size=8), st.text(WIRE_CHARS, max_size=8).map(str.encode)
    )
    return st.lists(piece, max_size=6).map(b"".join)


def lines_of(line: st.SearchStrategy[bytes], line_ends: list[bytes]) -> st.SearchStrategy[bytes]:
    """Lines each ended by one of `line_ends` (b"" runs a line into the next one)."""
    return st.lists(st.tuples(line, st.sampled_from(line_ends)), max_size=12).map(
        lambda lines: b"".join(text + end for text, end in lines)
    )


# ---------------------------------------------------------------- AGI

AGI_FRAGMENTS = [
    b"agi_", b"agi_arg_", b"agi_arg_1", b": ", b":", b"HANGUP", b"200 result=", b"-1", b" (", b")",
    b" endpos=", b"510 ", b"511 ", b"520-", b"520 End of proper usage.", b"\r", b"\xff", b"\xc3",
    "²".encode(), b"\x00",
]  # fmt: skip
AGI_LINES = st.one_of(
    pieces(AGI_FRAGMENTS),
    st.tuples(  # an environment line
        st.sampled_from([b"agi_", b"agi_arg_"]),
        DIGIT_RUNS | st.text(WIRE_CHARS, max_size=8).map(str.encode),
        st.sampled_from([b": ", b":"]),
        pieces(AGI_FRAGMENTS),
    ).map(b"".join),
    st.tuples(  # a reply line
        st.sampled_from([b"HANGUP", b"200 result=", b"510 ", b"511 ", b"520-", b"520 End of proper usage."]),
        pieces(AGI_FRAGMENTS),
    ).map(b"".join),
)
SMALL_LIMITS = Limits(max_line=64, max_environment=512, max_arguments=4)
LINE_TEXT = st.text(LINE_CHARS, max_size=30).map(lambda text: text.rstrip("\r"))
"""Text of one line as it reads back (a CR before the LF ends the line)."""


def agi_outcome(limits: Limits, started: bool, commands: int, chunks: list[bytes]) -> Outcome:
    connection = AgiConnection(limits)
    if started:
        connection.receive_data(b"agi_network: yes\n\n")
        for _ in range(commands):
            connection.send_command("NOOP")
    events: list[Event] = []
    try:
        for chunk in chunks:
            events += connection.receive_data(chunk)
            assert len(connection._buffer) <= limits.max_line
        events += connection.receive_data(b"")
    except AgiProtocolError:
        return events, True
    return events, False


@fuzz(
    lines_of(AGI_LINES, [b"\n", b"\r\n", b""]),
    st.sampled_from([SMALL_LIMITS, Limits()]),
    st.booleans(),
    st.integers(0, 4),
    CUTS,
)
def test_agi_any_bytes_any_cut_same_events_or_protocol_error(
    data: bytes, limits: Limits, started: bool, commands: int, cuts: list[int]
) -> None:
    reference = agi_outcome(limits, started, commands, one_by_one(data))
    assert_same_outcome(agi_outcome(limits, started, commands, split(data, cuts)), reference)
    assert_same_outcome(agi_outcome(limits, started, commands, [data] if data else []), reference)


@fuzz(
    st.lists(st.binary(min_size=1, max_size=300).map(lambda data: data.replace(b"\n", b"\r")), max_size=20),
    st.integers(1, 1024),
    st.booleans(),
)
def test_agi_line_without_end_never_outgrows_max_line(chunks: list[bytes], max_line: int, started: bool) -> None:
    connection = AgiConnection(Limits(max_line=max_line))
    if started:
        connection.receive_data(b"\n")
    held = 0
    for chunk in chunks:
        held += len(chunk)
        try:
            assert connection.receive_data(chunk) == []
        except AgiProtocolError as exc:
            assert held > max_line and "line longer" in str(exc)
            return
        assert len(connection._buffer) == held <= max_line


ENV_KEYS = st.text(LINE_CHARS.filter(lambda char: char != ":"), max_size=12).map(
    lambda name: "agi_" + name.rstrip("\r")
)
AGI_CODES = st.integers(100, 999).filter(lambda code: code != 200)
VARIABLE_KEYS = ENV_KEYS.filter(lambda key: not re.fullmatch(r"agi_arg_\d+", key))
USAGE_LINES = LINE_TEXT.filter(lambda line: not line.startswith("520 ") and line != "HANGUP")


@st.composite
def agi_replies(draw: st.DrawFn) -> tuple[list[str], Reply | Hangup]:
    """The lines Asterisk sends for one reply (or an unsolicited HANGUP), and its event."""
    shape = draw(st.sampled_from(["200", "code", "usage", "hangup"]))
    if shape == "200":
        result = draw(st.text(WIRE_CHARS.filter(lambda char: not char.isspace()), max_size=8))
        data = draw(st.none() | LINE_TEXT)
        endpos = draw(st.none() | st.integers(-1, 10**9))
        line = f"200 result={result}" + (f" ({data})" if data is not None else "")
        line += f" endpos={endpos}" if endpos is not None else ""
        return [line], Reply(200, result, data, (line,))
    if shape == "code":
        line = f"{draw(AGI_CODES)} {draw(LINE_TEXT)}"
        return [line], Reply(int(line[:3]), lines=(line,))
    if shape == "usage":
        lines = ["520-" + draw(LINE_TEXT), *draw(st.lists(USAGE_LINES, max_size=4)), "520 End of proper usage."]
        return lines, Reply(520, lines=tuple(lines))
    return ["HANGUP"], Hangup()


@fuzz(
    st.dictionaries(VARIABLE_KEYS, LINE_TEXT, max_size=8),
    st.lists(LINE_TEXT, max_size=6),
    st.lists(agi_replies(), max_size=8),
    st.sampled_from(["\n", "\r\n"]),
    CUTS,
    CUTS,
)
def test_agi_session_parses_back_under_any_cut(
    variables: dict[str, str],
    arguments: list[str],
    replies: list[tuple[list[str], Reply | Hangup]],
    end: str,
    env_cuts: list[int],
    reply_cuts: list[int],
) -> None:
    connection = AgiConnection()
    lines = [f"{key}: {value}" for key, value in variables.items()]
    lines += [f"agi_arg_{number}: {value}" for number, value in enumerate(arguments, 1)]
    environment = "".join(line + end for line in lines) + end
    events = [event for chunk in split(environment.encode(), env_cuts) for event in connection.receive_data(chunk)]
    assert events == [Environment(variables, arguments)]
    for _ in range(sum(not isinstance(event, Hangup) for _, event in replies)):
        connection.send_command("NOOP")
    stream = "".join(line + end for reply_lines, _ in replies for line in reply_lines).encode()
    events = [event for chunk in split(stream, reply_cuts) for event in connection.receive_data(chunk)]
    assert events == [event for _, event in replies]
    assert connection.state is State.IDLE


ARGUMENT_NUMBERS = st.integers(1, 300).map(str) | st.integers(1, 5000).map(lambda n: "9" * n)


@fuzz(
    st.dictionaries(VARIABLE_KEYS, LINE_TEXT, max_size=4),
    st.dictionaries(ARGUMENT_NUMBERS, LINE_TEXT, max_size=6),
    st.randoms(use_true_random=False),
)
@example({}, {"9" * 4301: ""}, Random(0))  # was a ValueError: int() refuses more than 4300 digits
def test_agi_environment_of_any_argument_numbers_keeps_their_order_or_is_refused(
    variables: dict[str, str], arguments: dict[str, str], random: Random
) -> None:
    lines = [f"{key}: {value}" for key, value in variables.items()]
    lines += [f"agi_arg_{number}: {value}" for number, value in arguments.items()]
    random.shuffle(lines)
    try:
        events = AgiConnection().receive_data("".join(line + "\n" for line in lines).encode() + b"\n")
    except AgiProtocolError:
        return  # sessions with sane argument numbers parse: see the session property above
    in_order = [arguments[number] for number in sorted(arguments, key=lambda number: (len(number), number))]
    assert events == [Environment(variables, in_order)]


@fuzz(st.lists(LINE_TEXT, min_size=1, max_size=12), st.integers(16, 512))
@example(["0\u0800\U00010000"], 16)  # 17 bytes were let through: characters were counted
def test_agi_environment_holds_to_max_environment_bytes(values: list[str], max_environment: int) -> None:
    lines = [f"agi_v{number}: {value}".encode() for number, value in enumerate(values)]
    size = sum(len(line) + 1 for line in lines)
    connection = AgiConnection(Limits(max_environment=max_environment))
    try:
        events = connection.receive_data(b"".join(line + b"\n" for line in lines) + b"\n")
    except AgiProtocolError as exc:
        assert size > max_environment and "environment larger" in str(exc)
    else:
        assert size <= max_environment and [type(event) for event in events] == [Environment]


REPLY_LINES = st.tuples(
    st.text(st.characters(categories=["N"]), max_size=4),
    st.sampled_from(["", " ", " result=", "-"]),
    st.text(st.characters(exclude_characters="\n"), max_size=20),
).map("".join)
"""Lines starting with numerals of any script: the status code is read from them."""


@fuzz(REPLY_LINES)
@example("²")  # was a ValueError: "²".isdigit()
def test_agi_any_reply_line_is_a_reply_or_a_protocol_error(line: str) -> None:
    try:
        reply = parse_reply(line)
    except AgiProtocolError:
        return
    assert reply.lines == (line,)
    assert reply.code == int(line[:3])
    if reply.result:
        assert line.startswith(f"200 result={reply.result}")


LONG_RUNS = st.tuples(
    st.sampled_from(['"', "\\", "é", "😀", "x", "\r", "\ud800"]), st.integers(0, MAX_COMMAND_BYTES)
).map(lambda run: run[0] * run[1])
"""What quoting makes longer, what becomes a space or cannot be encoded, at lengths up to a command's."""
AGI_VALUES = st.lists(ANY_TEXT | LONG_RUNS | st.sampled_from(['"', "\\", " ", "\t", "\n"]), max_size=6).map("".join)


@fuzz(st.from_regex(r"[A-Za-z0-9_()]{1,64}", fullmatch=True), AGI_VALUES)
@example("0", '"' * 4088)  # was a ValueError: cut before quoting, too long after
@example("0", "x" + "\\" * 4000)  # the cut must not split an escaped backslash
@example("0", "\ud800")  # was a UnicodeEncodeError
def test_set_variable_reads_back_through_asterisk_parse_args(name: str, value: str) -> None:
    command = encode_command(set_variable(name, value))  # one line, within Asterisk's buffer
    sent = re.sub(r"[\ud800-\udfff]", "\ufffd", re.sub(r"[\x00-\x1f\x7f]", " ", value))
    argv = parse_args(command[:-1].decode("utf-8"))
    assert argv[:3] == ["SET", "VARIABLE", name] and len(argv) == 4
    if argv[3] != sent:  # cut to fit, between two characters
        assert sent.startswith(argv[3]) and len(command) > MAX_COMMAND_BYTES // 2


# ---------------------------------------------------------------- AMI

HEADER_NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
AMI_FRAGMENTS = [
    b"Asterisk Call Manager/", b"Event: ", b"Response: Success", b"ActionID: ", b": ", b":", b"\r",
    b"\xff", b"\xc3",
]  # fmt: skip
AMI_LINES = st.one_of(
    pieces(AMI_FRAGMENTS),
    st.tuples(HEADER_NAMES.map(str.encode), st.sampled_from([b": ", b":"]), pieces(AMI_FRAGMENTS)).map(b"".join),
)
AMI_LIMITS = st.one_of(st.just((16384, 262144)), st.tuples(st.integers(1, 96), st.integers(1, 400)))


def ami_outcome(limits: tuple[int, int], chunks: list[bytes]) -> tuple[list[Any], str | None, int]:
    parser = AmiParser(*limits)
    messages = []
    for chunk in chunks:
        messages += [message.headers for message in parser.feed(chunk)]
        assert len(parser._buffer) < parser.max_line
        assert sum(len(name) + len(value) + 2 for name, value in parser._headers) <= parser.max_message
    return messages, parser.greeting, parser.discarded


@fuzz(lines_of(AMI_LINES, [b"\r\n", b"\n", b""]), AMI_LIMITS, CUTS)
def test_ami_any_bytes_any_cut_same_messages(data: bytes, limits: tuple[int, int], cuts: list[int]) -> None:
    whole = ami_outcome(limits, [data])
    assert ami_outcome(limits, split(data, cuts)) == whole
    assert ami_outcome(limits, one_by_one(data)) == whole


INJECTIONS = st.sampled_from(
    ["\r\nEvent: Forged", "\nAction: Logoff", "\r", "\r\n\r\n", "\x00", "\x7f", "\u2028", "\x85", "\ud83d", ": "]
)
AMI_VALUES = st.one_of(
    ANY_TEXT,
    st.lists(st.one_of(ANY_TEXT, INJECTIONS), max_size=4).map("".join),
    st.integers(0, MAX_LINE + 8).map(lambda n: "x" * n),
)


def unsendable(name: str, value: str) -> bool:
    """A control character, a surrogate UTF-8 cannot carry, or a line longer than Asterisk reads."""
    line = f"{name}: {value}\r\n".encode("utf-8", "surrogatepass")
    return bool(re.search(r"[\x00-\x1f\x7f\ud800-\udfff]", value)) or len(line) > MAX_LINE


@fuzz(
    AMI_VALUES,
    st.lists(st.tuples(HEADER_NAMES, AMI_VALUES), max_size=6),
    st.integers(0, MAX_HEADERS),
    st.booleans(),
    CUTS,
)
def test_ami_action_is_refused_or_parses_back_as_one_message(
    action: str, headers: list[tuple[str, str]], padding: int, greeted: bool, cuts: list[int]
) -> None:
    lines = [("Action", action), *headers, *[("Pad", "")] * padding]
    refused = len(lines) > MAX_HEADERS or any(unsendable(name, value) for name, value in lines)
    try:
        data = encode_action(action, lines[1:])
    except ValueError:
        assert refused
        return
    assert not refused
    stream = (b"Asterisk Call Manager/11.0.0\r\n" if greeted else b"") + data
    parser = AmiParser()
    assert [message.headers for chunk in split(stream, cuts) for message in parser.feed(chunk)] == [tuple(lines)]


@fuzz(st.lists(AMI_VALUES, min_size=1, max_size=4), CUTS)
def test_ami_escaped_text_parses_back_exactly(texts: list[str], cuts: list[int]) -> None:
    headers = [(f"Body{i}", fit_value(text, escape_value, value_budget(f"Body{i}"))) for i, text in enumerate(texts)]
    parser = AmiParser()
    chunks = split(encode_action("UserEvent", headers), cuts)
    [message] = [message for chunk in chunks for message in parser.feed(chunk)]
    assert message.headers == (("Action", "UserEvent"), *headers)
    for text, (_, value) in zip(texts, headers, strict=True):
        if value == escape_value(text):
            assert unescape_value(value) == text
        else:  # cut to fit, never inside an escape
            assert value.endswith("...") and text.startswith(unescape_value(value[:-3]))


# ---------------------------------------------------------------- AudioSocket

UUID_MESSAGE = HEADER.pack(Kind.UUID, 16) + bytes(range(16))
LONGEST_PAYLOAD = max(codec.pcm_bytes(rate, codec.MAX_AUDIO_MS) for rate in AUDIO_RATES.values())
SOCKET_FRAGMENTS = [
    UUID_MESSAGE, HEADER.pack(Kind.AUDIO_8K, 4) + bytes(4), HEADER.pack(Kind.AUDIO_16K, 2) + b"\x01\x02",
    HEADER.pack(Kind.DTMF, 1) + b"5", HEADER.pack(Kind.DTMF, 1) + b"x", HEADER.pack(Kind.ERROR, 1) + b"\x02",
    codec.encode_hangup(), HEADER.pack(Kind.AUDIO_8K, 3), HEADER.pack(Kind.AUDIO_8K, 1602), b"\x10\xff", b"\x02",
]  # fmt: skip


def socket_outcome(chunks: list[bytes]) -> Outcome:
    """Frames until the parser closes: its caller stops reading then.

    Each chunk is offered to `audio_payload` first, as the server does, so the cuts that
    make a chunk one whole audio message check its short cut against `feed`.
    """
    parser = AudioSocketParser()
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            if parser.state is codec.State.CLOSED:
                break
            payload = parser.audio_payload(chunk)
            if payload is not None:
                assert parser.audio_kind is not None
                frames.append(Frame(parser.audio_kind, payload))
                continue
            frames += parser.feed(chunk)
            assert len(parser._buffer) < HEADER.size + LONGEST_PAYLOAD
    except ProtocolError:
        return frames, True
    return frames, False


@fuzz(
    st.booleans(),
    st.lists(st.one_of(st.sampled_from(SOCKET_FRAGMENTS), st.binary(max_size=8)), max_size=24).map(b"".join),
    CUTS,
)
def test_audiosocket_any_bytes_any_cut_same_frames_or_protocol_error(
    opened: bool, rest: bytes, cuts: list[int]
) -> None:
    data = (UUID_MESSAGE if opened else b"") + rest
    reference = socket_outcome(one_by_one(data))
    assert_same_outcome(socket_outcome(split(data, cuts)), reference)
    assert_same_outcome(socket_outcome([data]), reference)


@st.composite
def socket_sessions(draw: st.DrawFn) -> tuple[list[Frame], bytes]:
    """A session as Asterisk may send it (the gateway's hangup closing it), and its bytes."""
    audio = draw(st.sampled_from(sorted(AUDIO_RATES)))
    samples = codec.pcm_bytes(AUDIO_RATES[audio], codec.MAX_AUDIO_MS) // 2
    pcm = st.tuples(st.integers(1, samples), st.binary(min_size=1, max_size=8)).map(
        lambda drawn: (drawn[1] * 2 * drawn[0])[: 2 * drawn[0]]
    )
    frames = [Frame(Kind.UUID, draw(st.binary(min_size=16, max_size=16)))]
    frames += draw(st.lists(st.one_of(
        pcm.map(lambda payload: Frame(audio, payload)),
        st.sampled_from(sorted(codec.DTMF_DIGITS)).map(lambda digit: Frame(Kind.DTMF, bytes([digit]))),
        st.binary(max_size=codec.MAX_ERROR_PAYLOAD).map(lambda payload: Frame(Kind.ERROR, payload)),
    ), max_size=8))  # fmt: skip
    data = b"".join(
        codec.encode_audio(frame.kind, frame.payload)
        if frame.kind in AUDIO_RATES
        else HEADER.pack(frame.kind, len(frame.payload)) + frame.payload  # what only Asterisk sends
        for frame in frames
    )
    if draw(st.booleans()):  # what follows a hangup is ignored
        frames.append(Frame(Kind.HANGUP, b""))
        data += codec.encode_hangup() + draw(st.binary(max_size=8))
    return frames, data


@fuzz(socket_sessions(), CUTS)
def test_audiosocket_frames_parse_back_under_any_cut(session: tuple[list[Frame], bytes], cuts: list[int]) -> None:
    frames, data = session
    assert socket_outcome(split(data, cuts)) == (frames, False)
    assert socket_outcome([data]) == (frames, False)


# ---------------------------------------------------------------- WAV

PCM, FLOAT, EXTENSIBLE = wav.WAVE_FORMAT_PCM, wav.WAVE_FORMAT_IEEE_FLOAT, wav.WAVE_FORMAT_EXTENSIBLE
ACCEPTED = [(PCM, 8), (PCM, 16), (PCM, 24), (PCM, 32), (FLOAT, 32), (FLOAT, 64)]
RATES = [wav.MIN_RATE - 1, wav.MIN_RATE, 8000, 11025, ENGINE_RATE, 44100, wav.MAX_RATE, wav.MAX_RATE + 1]
GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def chunk(chunk_id: bytes, body: bytes, declared: int | None = None) -> bytes:
    size = len(body) if declared is None else declared
    return struct.pack("<4sI", chunk_id, size) + body + b"\0" * (len(body) & 1)


@st.composite
def wav_files(draw: st.DrawFn) -> bytes:
    """Files as the recorder writes them, or built field by field around what is accepted."""
    if draw(st.booleans()):
        pcm = draw(st.binary(max_size=400))
        pcm = pcm[: len(pcm) // 2 * 2]
        return wav_header(draw(st.sampled_from(wav.RECORD_RATES)), len(pcm)) + pcm
    if draw(st.booleans()):  # a format that is accepted
        tag, bits = draw(st.sampled_from(ACCEPTED))
        channels = draw(st.integers(1, wav.MAX_CHANNELS))
        rate = draw(st.sampled_from(RATES[1:-1]))
        align = channels * bits // 8
    else:
        tag, bits = draw(st.sampled_from([PCM, FLOAT, 0x0006, 0x0055, 0])), draw(st.sampled_from([0, 4, 8, 12, 16, 64]))
        channels = draw(st.integers(0, 3))
        rate = draw(st.sampled_from(RATES) | st.integers(0, 2**32 - 1))
        align = draw(st.just(channels * bits // 8) | st.integers(0, 2**16 - 1))
    fmt_tag = EXTENSIBLE if draw(st.booleans()) else tag
    body = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * align % 2**32, align, bits)
    if fmt_tag == EXTENSIBLE:
        body += struct.pack("<HHIH", 22, bits, 0, tag) + draw(st.sampled_from([GUID_TAIL, GUID_TAIL, bytes(14)]))
    data = draw(st.binary(max_size=600))
    data = data[: len(data) - len(data) % align] if align else data
    declared = draw(st.one_of(st.none(), st.none(), st.integers(0, 2**32 - 1)))
    chunks = [chunk(b"fmt ", body), chunk(b"data", data, declared)]
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([b"JUNK", b"LIST", b"JUNK", b"LIST", b"fmt ", b"data"]))
        chunks.insert(draw(st.integers(0, len(chunks))), chunk(name, draw(st.binary(max_size=9))))
    form = b"WAVE" + b"".join(chunks)
    return struct.pack("<4sI", draw(st.sampled_from([b"RIFF"] * 8 + [b"RF64", b"RIFX"])), len(form)) + form


DAMAGE = st.just(([], 0)) | st.tuples(
    st.lists(st.tuples(st.integers(12, 63) | st.integers(12, 1024), st.integers(0, 255)), max_size=4),
    st.integers(0, 64) | st.integers(0, 2**16),
)
"""No damage, or bytes overwritten (most in the header, past its RIFF tag) and bytes cut off the end."""


def damage(data: bytes, edits: tuple[list[tuple[int, int]], int]) -> bytes:
    changes, cut = edits
    damaged = bytearray(data[: len(data) - cut % (len(data) + 1)])
    for offset, value in changes:
        if offset < len(damaged):
            damaged[offset] = value
    return bytes(damaged)


@fuzz(st.integers(wav.MIN_RATE, wav.MAX_RATE), st.integers(0, wav._MAX_DATA_BYTES), st.binary(max_size=200))
def test_wav_written_header_parses_back(rate: int, data_size: int, pcm: bytes) -> None:
    assert parse_wav_header(wav_header(rate, data_size)) == WavHeader(WavFormat(PCM, 1, rate, 16), 44, data_size)
    pcm = pcm[: len(pcm) // 2 * 2]
    samples = decode_wav(wav_header(rate, len(pcm)) + pcm)
    assert abs(len(samples) - len(pcm) // 2 * ENGINE_RATE / rate) <= 1
    if rate == ENGINE_RATE:
        assert samples.astype("<i2").tobytes() == pcm


@fuzz(wav_files(), DAMAGE)
def test_wav_damaged_file_decodes_consistently_or_is_a_media_error(
    original: bytes, edits: tuple[list[tuple[int, int]], int]
) -> None:
    data = damage(original, edits)
    try:
        samples = decode_wav(data)
    except MediaFileError as exc:
        assert exc.code == wav.INVALID and exc.text and "\n" not in exc.text
        return
    header = parse_wav_header(data)
    fmt = header.format
    assert (fmt.encoding, fmt.bits) in ACCEPTED and 1 <= fmt.channels <= wav.MAX_CHANNELS
    assert wav.MIN_RATE <= fmt.rate <= wav.MAX_RATE
    assert header.data_offset + header.data_size <= len(data) and header.data_size % fmt.block_align == 0
    assert samples.dtype == np.int16 and samples.ndim == 1
    assert abs(len(samples) - header.data_size // fmt.block_align * ENGINE_RATE / fmt.rate) <= 1
    if (fmt.encoding, fmt.bits, fmt.channels, fmt.rate) == (PCM, 16, 1, ENGINE_RATE):
        assert samples.astype("<i2").tobytes() == data[header.data_offset : header.data_offset + header.data_size]


@fuzz(wav_files(), DAMAGE)
def test_wav_repair_leaves_a_consistent_file_or_the_file_alone(
    original: bytes, edits: tuple[list[tuple[int, int]], int]
) -> None:
    data = damage(original, edits)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rec.wav"
        path.write_bytes(data)
        try:
            changed = repair_wav_header(path)
        except MediaFileError as exc:
            assert exc.code == wav.INVALID
            assert path.read_bytes() == data
            return
        repaired = path.read_bytes()
        assert changed or repaired == data
        header = parse_wav_header(repaired)
        assert header.data_offset + header.data_size <= len(repaired)
        assert struct.unpack_from("<I", repaired, 4)[0] + 8 == len(repaired)
        assert repair_wav_header(path) is False
        if changed:
            assert header.data_size % header.format.block_align == 0
            decode_wav(repaired)
