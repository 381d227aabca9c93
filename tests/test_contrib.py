"""contrib/: the example configuration, the systemd unit, sysusers and tmpfiles stay in step with the code and the README."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import wave
from pathlib import Path, PurePosixPath

import pytest

from fastagi.config import SCHEMA, load_config
from fastagi.listener import FILES_BESIDES_CONNECTIONS

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
EXAMPLE = CONTRIB / "skype-fastagi.conf.example"
UNIT = CONTRIB / "skype-fastagi.service"
SYSUSERS = CONTRIB / "skype-fastagi.sysusers"
TMPFILES = CONTRIB / "skype-fastagi.tmpfiles"
README = CONTRIB.parent / "README.md"
VENV = "/opt/skype-fastagi"  # where README's "Installing on a server" puts the gateway
FIXED_SECTIONS = ("general", "ami", "audiosocket")


def example_keys() -> dict[str, dict[str, str]]:
    """Kind of each section (general, ami, audiosocket, account, user) → {key: comment above it}."""
    sections: dict[str, dict[str, str]] = {}
    kinds: dict[str, str] = {}
    current: dict[str, str] = {}
    comment = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            name = line[1 : line.index("]")]
            current = sections.setdefault(name, {})
            kinds[name] = name
        elif line.startswith(";"):
            comment = line
        elif "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = comment
            comment = ""
            if key == "type":
                kinds[name] = value
    merged: dict[str, dict[str, str]] = {}
    for name, keys in sections.items():
        merged.setdefault(kinds[name], {}).update(keys)
    return merged


def load_example(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The example as an administrator would load it, with its private CA file and its greeting WAV in place."""
    ca_file = tmp_path / "private-ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    greeting = tmp_path / "greeting.wav"
    with wave.open(str(greeting), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(bytes(1600))
    copy = tmp_path / EXAMPLE.name
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "\ngreeting = greeting.wav\n" in text  # under media_dir
    copy.write_text(text.replace("/etc/skype-fastagi/private-ca.pem", str(ca_file))
                    .replace("\ngreeting = greeting.wav\n", f"\ngreeting = {greeting}\n"))
    return load_config(copy)


def unit_settings() -> dict[str, list[str]]:
    """`Key=value` lines of the unit, values of repeated keys in order."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if re.match(r"^[A-Za-z]+=", line):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_example_config_loads_without_problems(tmp_path: Path) -> None:
    config = load_example(tmp_path)
    assert config.ami.enabled and config.ami.events_context == "skype-events"
    assert list(config.accounts) == ["alice", "support"]
    assert config.accounts["support"].network == "xmpp"
    assert "carol" in config.users


@pytest.mark.parametrize("kind", list(SCHEMA))
def test_the_example_config_sets_every_key_with_a_comment(kind: str) -> None:
    keys = example_keys()[kind]
    missing = [key.name for key in SCHEMA[kind] if key.name not in keys]
    assert missing == [], f"[{kind}] of {EXAMPLE.name} lacks {missing}"
    assert [name for name, comment in keys.items() if not comment] == []


def test_the_example_config_states_each_default() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for kind in FIXED_SECTIONS:
        for key in SCHEMA[kind]:
            if key.default is not None and key.default != "" and not isinstance(key.default, bool):
                assert f"Default: {key.default}" in text, f"[{kind}] {key.name}"


def test_the_unit_runs_the_gateway_sandboxed() -> None:
    unit = unit_settings()
    assert unit["User"] == ["skype-fastagi"]
    assert unit["ExecStart"] == [f"{VENV}/bin/skype-fastagi serve --config /etc/skype-fastagi/skype-fastagi.conf"]
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM",
                       "StateDirectory": "skype-fastagi"}.items():
        assert unit[key] == [value], key


def test_the_unit_waits_longer_than_the_shutdown_grace(tmp_path: Path) -> None:
    config = load_example(tmp_path)
    assert float(unit_settings()["TimeoutStopSec"][0]) > config.general.shutdown_grace + 5


def test_the_unit_allows_descriptors_for_max_connections_and_the_gateway_s_own(tmp_path: Path) -> None:
    """With less, `serve` warns at start (fastagi.listener.warn_if_short_of_descriptors)."""
    max_connections = load_example(tmp_path).general.max_connections
    assert int(unit_settings()["LimitNOFILE"][0]) >= max_connections + FILES_BESIDES_CONNECTIONS


def test_the_unit_lets_the_gateway_write_where_the_example_config_writes(tmp_path: Path) -> None:
    unit = unit_settings()
    writable = [PurePosixPath(p) for p in unit["ReadWritePaths"][0].split()]
    writable.append(PurePosixPath("/run") / unit["RuntimeDirectory"][0])
    general = load_example(tmp_path).general
    for path in (general.database, general.media_dir, general.incoming_dir, general.control_socket):
        assert any(PurePosixPath(path).is_relative_to(folder) for folder in writable), path
    assert PurePosixPath(general.database).is_relative_to(PurePosixPath("/var/lib") / unit["StateDirectory"][0])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # The binary is not installed where the tests run: verify with a stand-in command.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(f"{VENV}/bin/skype-fastagi", "/bin/true"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def server_install() -> list[str]:
    """The commands of the README's "Installing on a server", one a line."""
    section = README.read_text(encoding="utf-8").split("## Installing on a server", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```\n(.*?)```", section, re.S) for line in block.splitlines()]


def contents(path: Path) -> list[list[str]]:
    """The fields of each line of a sysusers or tmpfiles file, comments left out."""
    return [shlex.split(line) for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def test_the_readme_installs_what_the_unit_runs_where_the_contrib_files_say() -> None:
    commands = server_install()
    assert f"python3 -m venv {VENV}" in commands and f"{VENV}/bin/pip install ." in commands
    assert unit_settings()["ExecStart"][0].startswith(f"{VENV}/bin/skype-fastagi ")
    for source in (SYSUSERS, TMPFILES):  # each file's comment says where it goes; the README puts it there
        target = re.search(r"Install as (\S+?),? ", source.read_text(encoding="utf-8"))[1]
        assert f"install -m 0644 contrib/{source.name} {target}" in commands
    assert f"install -m 0644 contrib/{UNIT.name} /etc/systemd/system/" in commands
    installed = next(line for line in commands if "contrib/skype-fastagi.conf.example" in line).split()[-1]
    assert unit_settings()["ExecStart"][0].endswith(f"--config {installed}")


def test_sysusers_and_tmpfiles_make_the_user_and_folders_the_unit_and_the_example_use(tmp_path: Path) -> None:
    unit = unit_settings()
    [[kind, user, _, _, home]] = contents(SYSUSERS)
    assert (kind, user) == ("u", unit["User"][0]) and unit["Group"] == [user]
    assert home == f"/var/lib/{unit['StateDirectory'][0]}" == unit["WorkingDirectory"][0]
    folders = {PurePosixPath(fields[1]) for fields in contents(TMPFILES)}
    assert all(fields[0] == "d" and fields[3:5] == [user, user] for fields in contents(TMPFILES))
    general = load_example(tmp_path).general
    assert {PurePosixPath(general.media_dir), PurePosixPath(general.incoming_dir)} <= folders
    writable = [PurePosixPath(p) for p in unit["ReadWritePaths"][0].split()]
    assert all(any(folder.is_relative_to(w) for w in writable) for folder in folders)


def test_the_readme_and_the_example_serve_metrics_on_the_same_address(tmp_path: Path) -> None:
    [readme] = re.findall(r"`\[general\] metrics = (\S+)`", README.read_text(encoding="utf-8"))
    host, port = load_example(tmp_path).general.metrics
    assert readme == f"{host}:{port}" == "127.0.0.1:9473"


def test_the_readme_says_which_metrics_need_ami() -> None:
    """The test of the metrics holds that a gateway without AMI serves no skype_fastagi_ami_* series."""
    section = README.read_text(encoding="utf-8").split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"`(skype_fastagi_ami_\w+)`", section)
    assert len(listed) == 5
    after_last = " ".join(section.split(f"`{listed[-1]}`", 1)[1].split())
    assert after_last.startswith("(these five only with `[ami] enabled = yes`")
