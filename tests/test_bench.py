"""The benchmark scripts still run against the current gateway, each on a tiny load.

Their figures are not checked here (speed is measured by running them in full, see the
README's Performance section); what is checked is what a broken script would get wrong:
every server answers, no session fails, nothing is lost, every row is printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastagi.config import load_config
from test_fuzz import PROPERTIES

ROOT = Path(__file__).resolve().parent.parent


def bench(*argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rows(output: str, first: str) -> list[list[str]]:
    """The table rows whose second cell is `first`'s kind of server (or room count)."""
    return [line.split() for line in output.splitlines() if re.match(rf"^\s+\S+\s+{first}\s", line)]


def test_agi_load_compares_every_server_and_finds_every_message():
    output = bench("bench.agi_load", "--actions", "chatmessage-send", "--seconds", "0.3", "--concurrency", "2",
                   "--rates", "200", "--baselines", "minimal", "raw")
    table = rows(output, "(gateway|minimal|raw)")
    assert [(row[0], row[1]) for row in table] == [
        ("2", "gateway"), ("2", "minimal"), ("2", "raw"), ("200/s", "gateway"), ("200/s", "minimal"), ("200/s", "raw"),
    ]
    for row in table:
        rate, cpu_us, failed = float(row[2]), float(row[7]), int(row[9])
        assert rate > 0 and cpu_us > 0 and failed == 0, row
    assert re.search(r"after SIGKILL: (\d+) messages stored, \1 sessions told SUCCESS: all durable", output), output


def test_abuse_fails_no_normal_session_and_leaks_no_file():
    output = bench("bench.abuse", "--sessions", "200", "--rounds", "1", "--baseline", "1", "--settle", "0.5")
    assert "normal sessions failed = 0 (ok)" in output
    assert "ERROR records or tracebacks: 0" in output
    files = re.search(r"gateway files (\d+) -> (\d+)", output)
    assert files and files[1] == files[2], output


def test_media_bench_prints_a_row_per_room_count():
    output = bench("bench.media", "--seconds", "0.5", "--rooms", "1", "1", "5")
    assert [row[0] for row in rows(output, r"\d+")] == ["1", "1", "5"]


@pytest.mark.parametrize("bare", ["echo", "polled"])
def test_audiosocket_bench_bridges_every_call(bare: str):
    output = bench("bench.audiosocket", "--seconds", "1", "--calls", "1", "5", "--bare", bare, "--agi-seconds", "1.5")
    table = rows(output, r"\d+")
    assert [(row[0], row[1]) for row in table] == [("1", "1"), ("5", "5")], output


@pytest.mark.parametrize("options", [("--khz", "8"), ("--khz", "16"), ("--sockets",)])
def test_audiosocket_path_bench_prints_a_row_per_call_count(options: tuple[str, ...]):
    output = bench("bench.audiosocket_path", *options, "--calls", "1", "3", "--ticks", "5")
    table = [line.split() for line in output.splitlines() if re.match(r"^\s+\d+\s+[\d.]+$", line)]
    assert [row[0] for row in table] == ["1", "3"] and all(float(row[1]) > 0 for row in table), output


def test_fuzz_runs_every_property_without_a_failure():
    output = bench("bench.fuzz", "--minutes", "0.02", "--examples", "10")
    total = re.search(r"^total\s+(\d+)\s+(\d+)", output, re.MULTILINE)
    assert total and int(total[1]) > 0 and total[2] == "0", output
    ran = re.findall(r"^(test_\w+)\s+\d+\s+\d+\s+0$", output, re.MULTILINE)
    assert sorted(ran) == sorted(PROPERTIES), output


def test_xmpp_bench_sends_through_prosody_and_every_peer_message_arrives(prosody):  # type: ignore[no-untyped-def]
    output = bench("bench.xmpp", "--seconds", "0.5", "--concurrency", "2", "--rate", "40")
    [row] = [line.split() for line in output.splitlines() if re.match(r"^\s+2\s+\d", line)]
    gateway_rate, failed, bare_rate, minimal_rate = float(row[1]), int(row[3]), float(row[5]), float(row[8])
    assert gateway_rate > 0 and failed == 0 and bare_rate > 0 and minimal_rate > 0, output
    assert re.search(r"peer message -> UserEvent at 40/s: p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms, 0 not arrived", output), output


def test_jingle_bench_runs_echo_calls_through_the_gateway_and_the_bare_pair(prosody):  # type: ignore[no-untyped-def]
    output = bench("bench.jingle", "--calls", "2", "--seconds", "1")
    [row] = [line.split() for line in output.splitlines() if re.match(r"^\s+2\s+\d", line)]
    gateway_cpu, late, bare_cpu = float(row[1]), float(row[2].rstrip("%")), float(row[6])
    assert gateway_cpu > 0 and bare_cpu > 0 and late < 50, output  # the echo came back through both
    echo_sides = [[int(cpu) for cpu in column.split("/")] for column in (row[5], row[8])]
    assert all(peers > 0 for peers, _ in echo_sides), output  # each side's echo peers' CPU and its load core's


def test_no_benchmark_gateway_listens_on_this_machine_s_defaults(tmp_path: Path) -> None:
    """A gateway may run here on the default ports: the benchmarks' own take others and keep their files apart."""
    from bench.harness import EMBEDDED, gateway_config
    from bench.xmpp import AMI, XMPP_ACCOUNT

    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    xmpp = AMI.format(ami_port=40001) + XMPP_ACCOUNT.format(c2s=40002, ca=tmp_path / "ca.pem")
    for sections in (EMBEDDED, xmpp):
        path = tmp_path / "gateway.conf"
        path.write_text(gateway_config(40000, tmp_path, sections=sections))
        config = load_config(path)
        assert config.general.port == 40000 and config.audiosocket.port != 4575 and config.general.metrics is None
        for file in (config.general.control_socket, config.general.database):
            assert Path(file).is_relative_to(tmp_path), file
    copies = [script.name for script in (ROOT / "bench").glob("*.py") if "\n[general]\n" in script.read_text()]
    # every `serve` a benchmark starts is configured by the harness; bench.audiosocket runs its gateway in-process,
    # its listeners on port 0 set in code
    assert sorted(copies) == ["audiosocket.py", "harness.py"]
