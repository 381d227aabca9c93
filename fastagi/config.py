"""The configuration file: Asterisk `.conf` syntax, read with pyst2's `asterisk.config`.

Every key of every section is declared once in `SCHEMA` (type, default, one-line doc);
loading, `check-config` and the README's configuration reference all read it. A file is
checked as a whole: every problem is reported with file, line and reason, and unknown
keys, bad values and duplicate sections or keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import asterisk.config

from .model.profiles import SKYPE_NAME

T = TypeVar("T")


class ValueProblem(ValueError):
    """A value that does not parse; the message says why."""


# -- value parsers -------------------------------------------------------------
def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueProblem(f"{text!r} is not yes/no")


def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueProblem(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueProblem(f"{value} is outside {low}..{high}")
        return value

    return parse


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueProblem(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:
        raise ValueProblem(f"{value} seconds is outside 0..86400")
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueProblem(f"{text!r} is not one of {', '.join(choices)}")
        return text.lower()

    return parse


def event_loop(text: str) -> str:
    name = one_of("asyncio", "uvloop")(text)
    if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueProblem("uvloop is not installed here (pip install 'skype-fastagi[uvloop]')")
    return name


def matching(pattern: str, what: str) -> Callable[[str], str]:
    regex = re.compile(pattern)

    def parse(text: str) -> str:
        if not regex.match(text):
            raise ValueProblem(f"{text!r} is not {what}")
        return text

    return parse


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueProblem(f"{text!r} is not an address or CIDR network") from None


def host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueProblem(f"{text!r} is not a host name or address")
    return text


def path(text: str) -> Path:
    if not text or "\x00" in text:
        raise ValueProblem("empty path")
    return Path(text)


def free_text(text: str) -> str:
    return text


def host_port(text: str) -> tuple[str, int]:
    name, sep, port = text.rpartition(":")
    if not sep:
        raise ValueProblem(f"{text!r} is not host:port")
    return host(name.strip("[]")), int_in(0, 65535)(port)


# -- the schema ----------------------------------------------------------------
NETWORKS = ("embedded", "xmpp")

@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str
    repeatable: bool = False


PROFILE_KEYS = (
    Key("fullname", free_text, "", "full name shown in profiles and caller ids"),
    Key("displayname", free_text, "", "display name (defaults to fullname)"),
    Key("birthday", matching(r"^(\d{4}-\d{2}-\d{2})?$", "a date YYYY-MM-DD"), "", "birth date, YYYY-MM-DD"),
    Key("sex", one_of("male", "female", "unknown"), "unknown", "male | female | unknown"),
    Key("language", free_text, "", "language (ISO code and name, free text)"),
    Key("country", free_text, "", "country"),
    Key("province", free_text, "", "province or state"),
    Key("city", free_text, "", "city"),
    Key("phone_home", free_text, "", "home phone"),
    Key("phone_office", free_text, "", "office phone"),
    Key("phone_mobile", free_text, "", "mobile phone"),
    Key("homepage", free_text, "", "home page URL"),
    Key("mood_text", free_text, "", "mood text (catchphrase)"),
    Key("rich_mood_text", free_text, "", "rich mood text"),
    Key("timezone", matching(r"^(-?\d{1,6})?$", "an offset in seconds from UTC"), "", "UTC offset in seconds"),
)

SCHEMA: dict[str, tuple[Key, ...]] = {
    "general": (
        Key("bind", host, "127.0.0.1", "FastAGI listen address"),
        Key("port", int_in(1, 65535), 4573, "FastAGI listen port"),
        Key("permit", network, None, "address or CIDR allowed to connect; repeatable (default 127.0.0.1/32)", True),
        Key("database", path, Path("skype-fastagi.db"), "SQLite state file (WAL)"),
        Key("database_sync", one_of("normal", "full"), "normal",
            "normal: each change survives a crash of the gateway | full: also a power loss (one fsync per change)"),
        Key("media_dir", path, Path("media"), "folder for relative WAV names"),
        Key("media_path", path, None, "another folder where absolute WAV names are allowed; repeatable", True),
        Key("incoming_dir", path, Path("incoming"), "folder where received files are stored, one subfolder per account"),
        Key("max_file_size", int_in(1, 1_000_000), 100, "largest file, MiB, that file-send sends and an XMPP account receives"),
        Key("variable_prefix", matching(r"^[A-Z][A-Z0-9_]{0,30}$", "an upper-case variable prefix"), "SKYPE_", "prefix of every channel variable set"),
        Key("log_level", one_of("debug", "info", "warning", "error"), "info", "debug | info | warning | error"),
        Key("event_loop", event_loop, "asyncio", "asyncio | uvloop (faster; needs pip install 'skype-fastagi[uvloop]')"),
        Key("environment_timeout", seconds, 5.0, "seconds a client has to send its AGI environment"),
        Key("session_timeout", seconds, 60.0, "cap on one AGI session, seconds"),
        Key("max_connections", int_in(1, 100000), 2048, "AGI connections open at once; more are refused"),
        Key("shutdown_grace", seconds, 5.0, "seconds running sessions get to finish on shutdown"),
        Key("ring_timeout", seconds, 30.0, "seconds an unanswered call rings before it is MISSED"),
        Key("network_timeout", seconds, 10.0,
            "seconds a live network has to confirm a request or answer a query before the action fails"),
        Key("media_timeout", seconds, 20.0,
            "seconds an XMPP call's media has to come up, and then the longest its other side may send nothing "
            "(the call then FAILS with the reason)"),
        Key("sms_price", int_in(0, 100000), 10, "SkypeOut price of one SMS part, hundredths"),
        Key("record_rate", one_of("8000", "16000"), "8000", "sample rate of recorded WAV files: 8000 | 16000"),
        Key("metrics", host_port, None, "host:port of the Prometheus endpoint (off when absent; port 0: any free port)"),
        Key("control_socket", path, Path("skype-fastagi.ctl"), "Unix socket of the admin CLI"),
    ),
    "ami": (
        Key("enabled", parse_bool, False, "connect to Asterisk's manager interface"),
        Key("host", host, "127.0.0.1", "AMI host"),
        Key("port", int_in(1, 65535), 5038, "AMI port"),
        Key("username", free_text, "", "AMI user (manager.conf)"),
        Key("secret", free_text, "", "AMI secret (never logged)"),
        Key("incoming_context", matching(r"^[A-Za-z0-9_.-]+$", "a context name"), "skype-incoming", "context where incoming Skype calls are originated"),
        Key("events_context", matching(r"^[A-Za-z0-9_.-]*$", "a context name"), "", "context that Skype events also run (off when empty)"),
        Key("incoming_media", one_of("local", "audiosocket"), "local", "channel for incoming calls: local | audiosocket"),
        Key("queue_size", int_in(1, 10_000_000), 10000, "actions held while AMI is down; new ones past it are dropped (counted)"),
        Key("ping_interval", seconds, 5.0, "seconds between liveness pings"),
        Key("ping_timeout", seconds, 3.0, "seconds a ping may take before the connection is dropped"),
        Key("originate_timeout", seconds, 30.0, "seconds the incoming-call dialplan has to answer its channel"),
    ),
    "audiosocket": (
        Key("enabled", parse_bool, True, "run the AudioSocket server"),
        Key("bind", host, "127.0.0.1", "AudioSocket listen address"),
        Key("port", int_in(0, 65535), 4575, "AudioSocket listen port"),
        Key("permit", network, None, "address or CIDR allowed to connect; repeatable (default: the [general] permit)", True),
        Key("jitter_frames", int_in(1, 10), 1, "20 ms frames from Asterisk buffered before playout (more absorbs a jittery link, adds delay)"),
    ),
    "account": (
        Key("type", free_text, "account", "account: a Skype account registered on this server"),
        *PROFILE_KEYS,
        Key("balance", int_in(0, 10**9), 0, "initial SkypeOut credit, hundredths (later the database holds it)"),
        Key("currency", matching(r"^[A-Z]{3}$", "a 3-letter currency code"), "EUR", "currency of the credit"),
        Key("auth_policy", one_of("ask", "allow", "deny"), "ask", "incoming buddy requests: ask | allow | deny"),
        Key("voicemail", parse_bool, True, "callers may leave voicemail (call-vm)"),
        Key("unanswered", one_of("missed", "voicemail"), "missed", "an incoming call nobody answers: missed | voicemail"),
        Key("network", one_of(*NETWORKS), "embedded", "the network the account lives on: embedded | xmpp"),
        Key("jid", free_text, "", "xmpp: the account's address, user@domain"),
        Key("password", free_text, "", "xmpp: the account's password (never logged)"),
        Key("xmpp_server", host, "", "xmpp: the server to connect to (default: the JID's domain, by DNS SRV, then A/AAAA)"),
        Key("xmpp_port", int_in(0, 65535), 0, "xmpp: its port (default: 5222, or 5223 with xmpp_tls = direct)"),
        Key("xmpp_tls", one_of("starttls", "direct", "none"), "starttls",
            "xmpp: starttls | direct (TLS from the first byte) | none (plain TCP: loopback servers only)"),
        Key("xmpp_ca_file", path, None, "xmpp: a PEM file of a CA to trust besides the system's"),
        Key("resource", free_text, "skype-fastagi", "xmpp: the resource the account logs in with"),
        Key("call_policy", one_of("anyone", "contacts"), "anyone",
            "xmpp: whose calls ring the account: anyone | contacts (the others are refused)"),
        Key("stun_server", host_port, None, "xmpp calls: a STUN server host:port (else the XMPP server's, XEP-0215)"),
        Key("turn_server", host_port, None, "xmpp calls: a TURN server host:port, for calls through NAT"),
        Key("turn_username", free_text, "", "xmpp calls: the TURN user"),
        Key("turn_password", free_text, "", "xmpp calls: the TURN password (never logged)"),
        Key("voicemail_greeting", path, None,
            "xmpp: the WAV a caller sent to voicemail hears before the beep (none: the beep only)"),
        Key("voicemail_max", seconds, 120.0, "xmpp: the longest voicemail message, in seconds"),
    ),
    "user": (
        Key("type", free_text, "user", "user: a user of the embedded Skype network"),
        *PROFILE_KEYS,
        Key("behaviour", one_of("echo", "answer", "busy", "noanswer", "refuse", "offline", "voicemail"), "answer", "what a call to this user does"),
        Key("status", one_of("online", "away", "dnd", "na", "invisible", "offline"), "online", "presence (offline behaviour implies offline)"),
        Key("ring_delay", seconds, 1.0, "seconds from ROUTING to RINGING"),
        Key("answer_delay", seconds, 2.0, "seconds of ringing before an answer / busy / refusal"),
        Key("auth_policy", one_of("allow", "deny", "ignore"), "allow", "how this user answers buddy requests"),
        Key("voicemail", parse_bool, True, "this user's voicemail is enabled"),
        Key("greeting", path, None, "WAV an `answer` user plays to the caller (a relative name is under media_dir)"),
    ),
}
SECTION_TYPES = ("account", "user")
XMPP_KEYS = ("jid", "password", "xmpp_server", "xmpp_port", "xmpp_tls", "xmpp_ca_file", "resource", "call_policy",
             "stun_server", "turn_server", "turn_username", "turn_password", "voicemail_greeting", "voicemail_max")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    """0 for a problem of the file as a whole."""
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Section:
    """One parsed section: its values by key name, plus where it was."""

    name: str
    line: int
    values: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    """The line of each key the file gave."""

    def __getattr__(self, item: str) -> Any:
        try:
            return self.values[item]
        except KeyError:
            raise AttributeError(item) from None


@dataclass
class Config:
    general: Section
    ami: Section
    audiosocket: Section
    accounts: dict[str, Section] = field(default_factory=dict)
    users: dict[str, Section] = field(default_factory=dict)
    source: str = "(embedded defaults)"


def settings(cls: type[T], *sections: Section, **given: Any) -> T:
    """An instance of the settings dataclass `cls`: each field from the first section with a key of its
    name (SCHEMA checked the values), else from `given`, else its default."""
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        for section in sections:
            if spec.name in section.values:
                values[spec.name] = section.values[spec.name]
                break
        else:
            if spec.name in given:
                values[spec.name] = given[spec.name]
    return cls(**values)


def _defaults(kind: str) -> dict[str, Any]:
    return {k.name: ([] if k.repeatable else k.default) for k in SCHEMA[kind]}


DEFAULT_PATH = Path("/etc/skype-fastagi/skype-fastagi.conf")
ENVIRONMENT = "SKYPE_FASTAGI_CONFIG"


def config_path(given: str | None, environ: Mapping[str, str] | None = None, default: Path = DEFAULT_PATH) -> Path | None:
    """The file a command reads: `--config FILE`, else `$SKYPE_FASTAGI_CONFIG` (set empty: no file), else
    `default` when it exists; None: the embedded defaults."""
    if given:
        return Path(given)
    environ = os.environ if environ is None else environ
    if ENVIRONMENT in environ:
        return Path(environ[ENVIRONMENT]) if environ[ENVIRONMENT] else None
    return default if default.exists() else None


def read_config(given: str | None) -> Config:
    """The configuration a command runs on (see `config_path`); ConfigError when its file has problems."""
    path = config_path(given)
    return load_config(path) if path is not None else default_config()


def default_config() -> Config:
    """What `serve` runs on with no file: one account `demo`, echo123, AMI off."""
    return _finish(Config(
        general=Section("general", 0, _defaults("general")),
        ami=Section("ami", 0, _defaults("ami")),
        audiosocket=Section("audiosocket", 0, _defaults("audiosocket")),
        accounts=demo_accounts(),
    ))


def demo_accounts() -> dict[str, Section]:
    """The account of the embedded defaults, also served by a file that declares no account of its own."""
    demo = _defaults("account")
    demo.update(fullname="Demo Account", balance=1000)
    return {"demo": Section("demo", 0, demo)}


def builtin_users() -> dict[str, Section]:
    echo = _defaults("user")
    echo.update(fullname="Echo / Sound Test Service", behaviour="echo", ring_delay=0.5, answer_delay=0.5)
    return {"echo123": Section("echo123", 0, echo)}


def _finish(config: Config) -> Config:
    general = config.general.values
    if not general["permit"]:
        general["permit"] = [ipaddress.ip_network("127.0.0.1/32")]
    sockets = config.audiosocket.values
    if not sockets["permit"]:
        sockets["permit"] = list(general["permit"])
    for name, user in builtin_users().items():
        config.users.setdefault(name, user)
    return config


def account_problems(section: Section) -> list[tuple[int, str]]:
    """What is wrong with an account's network keys taken together: (line, reason) each."""
    where = lambda key: section.lines.get(key, section.line)  # noqa: E731
    name = section.name
    if section.network != "xmpp":
        return [(where(key), f"{key}: [{name}] is not on the xmpp network (network = xmpp)")
                for key in XMPP_KEYS if key in section.lines]
    problems = []
    jid = section.jid
    if not jid:
        problems.append((section.line, f"[{name}] network = xmpp needs jid = user@domain"))
    else:
        from slixmpp.jid import JID, InvalidJID  # here: only a file with an XMPP account pays for the import

        try:
            parsed = JID(jid)
        except InvalidJID as exc:
            problems.append((where("jid"), f"jid: {jid!r} is not a JID ({exc})"))
        else:
            if not parsed.user or parsed.resource:
                problems.append((where("jid"), f"jid: {jid!r} is not a bare JID user@domain (set the resource with resource =)"))
            elif section.xmpp_tls == "none" and not _loopback(section.xmpp_server or parsed.domain):
                problems.append((where("xmpp_tls"), f"xmpp_tls = none sends the password in clear: only to a loopback "
                                 f"server, not {section.xmpp_server or parsed.domain!r}"))
    if not section.password:
        problems.append((section.line, f"[{name}] network = xmpp needs a password"))
    if section.turn_server is not None and not (section.turn_username and section.turn_password):
        problems.append((where("turn_server"), "turn_server needs turn_username and turn_password"))
    ca_file = section.xmpp_ca_file
    if ca_file is not None and not ca_file.is_file():
        problems.append((where("xmpp_ca_file"), f"xmpp_ca_file: {ca_file} is not a readable file"))
    return problems


def _loopback(server: str) -> bool:
    if server == "localhost" or server.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(server.strip("[]")).is_loopback
    except ValueError:
        return False


def _close_match(word: str, choices: list[str]) -> str | None:
    """The choice `word` was probably meant to be (a typo, another case), if any."""
    found = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return found[0] if found else None


# -- reading a file ------------------------------------------------------------
class _AllProblemsConfig(asterisk.config.Config):
    """pyst2's parser stops at the first error and drops lines before any section;
    this keeps its line classes but walks every line and records every problem."""

    def __init__(self, filename: str) -> None:
        self.problems: list[tuple[int, str]] = []
        super().__init__(filename)

    def load(self) -> None:
        with open(self.filename, "rb") as handle:
            data = handle.read()
        try:
            self.raw_lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            self.problems.append((line, "not valid UTF-8"))
            self.raw_lines = data.decode("utf-8", errors="replace").splitlines()

    def parse(self) -> None:
        category = None
        for number, raw in enumerate(self.raw_lines, 1):
            text = raw.strip()
            if not text or text.startswith(";"):
                continue
            if text.startswith("#"):
                self.problems.append((number, f"{text.split()[0]} is not supported here"))
                continue
            try:
                if text.startswith("["):
                    category = asterisk.config.Category(text, number)
                    self.categories.append(category)
                elif category is None:
                    self.problems.append((number, "setting outside of any [section]"))
                else:
                    category.append(asterisk.config.Item(text, number))
            except asterisk.config.ParseError as exc:
                self.problems.append((exc.args[0], str(exc.args[1])))


def load_config(filename: str | Path) -> Config:
    """Read and check a file; raise ConfigError listing every problem found."""
    name = str(filename)
    try:
        raw = _AllProblemsConfig(name)
    except OSError as exc:
        raise ConfigError([Problem(name, 0, f"cannot read: {exc.strerror}")]) from None
    problems = [Problem(name, line, reason) for line, reason in raw.problems]
    builder = _Builder(name, problems)
    for category in raw.categories:
        builder.add(category)
    config = builder.result()
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: p.line))
    config.source = name
    return _finish(config)


class _Builder:
    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.problems = problems
        self.seen: dict[str, int] = {}
        self.names: dict[str, tuple[str, int]] = {}  # account and user names, lower-cased: (name, line)
        self.fixed = {kind: Section(kind, 0, _defaults(kind)) for kind in ("general", "ami", "audiosocket")}
        self.accounts: dict[str, Section] = {}
        self.users: dict[str, Section] = {}

    def problem(self, line: int, reason: str) -> None:
        self.problems.append(Problem(self.filename, line, reason))

    def add(self, category: asterisk.config.Category) -> None:
        name = category.name.strip()
        if name in self.seen:
            self.problem(category.number, f"duplicate section [{name}] (first at line {self.seen[name]})")
            return
        self.seen[name] = category.number
        items = [(item.name.strip(), item.value.strip(), item.number) for item in category.items]
        if name in self.fixed:
            self._fill(self.fixed[name], name, items)
            return
        kind = self._kind(name, category.number, items)
        if kind is None:
            return
        if not SKYPE_NAME.match(name):
            self.problem(category.number, f"[{name}] is not a valid Skype name")
            return
        first = self.names.setdefault(name.lower(), (name, category.number))
        if first[0] != name:
            self.problem(category.number, f"[{name}] is [{first[0]}] again (line {first[1]}): Skype names ignore case")
            return
        section = Section(name, category.number, _defaults(kind))
        self._fill(section, kind, items)
        if kind == "account":
            for line, reason in account_problems(section):
                self.problem(line, reason)
        (self.accounts if kind == "account" else self.users)[name] = section

    def _kind(self, name: str, line: int, items: list[tuple[str, str, int]]) -> str | None:
        """The `type` of a section that is not a fixed one, or None once its problem is reported."""
        given = next(((value, number) for key, value, number in items if key == "type"), None)
        if given is None:
            fixed = _close_match(name, list(self.fixed))
            if fixed:
                self.problem(line, f"unknown section [{name}]: did you mean [{fixed}]? "
                                   "(an account or a user needs type = account or type = user)")
            else:
                self.problem(line, f"section [{name}] needs type = account or type = user")
            return None
        kind, number = given
        if kind not in SECTION_TYPES:
            near = _close_match(kind, list(SECTION_TYPES))
            self.problem(number, f"type: {kind!r} is not one of {', '.join(SECTION_TYPES)}"
                                 + (f": did you mean {near}?" if near else ""))
            return None
        return kind

    def _fill(self, section: Section, kind: str, items: list[tuple[str, str, int]]) -> None:
        keys = {k.name: k for k in SCHEMA[kind]}
        given: dict[str, int] = {}
        for key_name, value, line in items:
            key = keys.get(key_name)
            if key is None:
                self.problem(line, f"unknown key {key_name!r} in [{section.name}]")
                continue
            if key_name in given and not key.repeatable:
                self.problem(line, f"duplicate key {key_name!r} in [{section.name}] (first at line {given[key_name]})")
                continue
            given[key_name] = line
            section.lines[key_name] = line
            try:
                parsed = key.parse(value)
            except ValueProblem as exc:
                self.problem(line, f"{key_name}: {exc}")
                continue
            if key.repeatable:
                section.values[key_name].append(parsed)
            else:
                section.values[key_name] = parsed

    def _check_wav(self, line: int, key: str, path: Path) -> None:
        """A WAV the gateway will play: it must be there and readable now, not fail at call time."""
        from .media.errors import MediaFileError  # here: only a file that names a WAV pays for numpy
        from .media.wav import load_wav

        try:
            load_wav(path)
        except MediaFileError as exc:
            self.problem(line, f"{key}: {exc.text}")

    def result(self) -> Config:
        ami = self.fixed["ami"]
        if ami.enabled and not ami.username:
            self.problem(self.seen.get("ami", 0), "[ami] enabled = yes needs a username")
        if ami.incoming_media == "audiosocket" and not self.fixed["audiosocket"].enabled:
            self.problem(self.seen.get("ami", 0), "[ami] incoming_media = audiosocket needs [audiosocket] enabled = yes")
        media_dir = self.fixed["general"].media_dir
        for user in self.users.values():
            if user.greeting is not None:
                user.values["greeting"] = media_dir / user.greeting  # an absolute name stays itself
                self._check_wav(user.lines["greeting"], "greeting", user.greeting)
        accounts = self.accounts or demo_accounts()
        return Config(self.fixed["general"], self.fixed["ami"], self.fixed["audiosocket"], accounts, self.users)
