"""A throwaway Prosody (Debian's package) on loopback, for tests and benchmarks.

Everything lives in a temporary folder: config, data, log, and certificates signed by a
CA made here (`ca_file`), for `localhost` and `upload.localhost`. Clients use STARTTLS on
`c2s_port` or TLS from the first byte on `direct_tls_port`; HTTP file upload (XEP-0363)
answers on `http_port`. It runs as the `prosody` user when started by root (Prosody
refuses a root-owned data folder otherwise), and `stop()` always leaves no process.

Without a `prosody` binary the tests that need it are skipped, unless
`SKYPE_FASTAGI_REQUIRE_XMPP=1` (CI sets it): then they fail.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOMAIN = "localhost"
UPLOAD = "upload.localhost"
MODULES = ("roster", "saslauth", "tls", "disco", "register", "blocklist", "vcard4", "vcard_legacy", "ping",
           "carbons", "pep", "private", "offline", "smacks", "http", "posix")
CONFIG = """
pidfile = "{folder}/prosody.pid"
data_path = "{folder}/data"
certificates = "{folder}/certs"
log = {{ info = "{folder}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ {direct} }}
s2s_ports = {{}}
https_ports = {{}}
http_ports = {{ {http} }}
http_interfaces = {{ "127.0.0.1" }}
http_default_host = "{upload}"
modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s" }}
allow_registration = true
registration_throttle_max = 0
authentication = "internal_hashed"
c2s_require_encryption = true
smacks_hibernation_time = 30
c2s_stanza_size_limit = 4 * 1024 * 1024 -- a peer's 1 MB message reaches the gateway
{external_services}
VirtualHost "{domain}"
{upload_component}
"""
EXTERNAL_SERVICES = """external_services = {
  { type = "stun", transport = "udp", host = "127.0.0.1", port = 3478 },
  { type = "turn", transport = "udp", host = "127.0.0.1", port = 3478, username = "pbx", password = "turn-secret" },
}
"""
"""STUN and TURN services announced with XEP-0215 (nothing answers there: only their discovery is tested)."""
UPLOAD_COMPONENT = """Component "{upload}" "http_file_share"
  http_file_share_size_limit = {limit}
  http_external_url = "http://127.0.0.1:{http}/"
"""


def available() -> bool:
    return shutil.which("prosody") is not None and shutil.which("prosodyctl") is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prosody:
    def __init__(self, upload: bool = True, upload_limit: int = 10 * 1024 * 1024, ice: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="prosody-"))
        self.c2s_port, self.direct_tls_port, self.http_port = free_port(), free_port(), free_port()
        self.config = self.folder / "prosody.cfg.lua"
        self.ca_file = self.folder / "ca.pem"
        self._process: subprocess.Popen[bytes] | None = None
        self._as_prosody = os.geteuid() == 0
        (self.folder / "data").mkdir()
        (self.folder / "certs").mkdir()
        self._write_certificates()
        component = UPLOAD_COMPONENT.format(upload=UPLOAD, limit=upload_limit, http=self.http_port) if upload else ""
        self.config.write_text(CONFIG.format(
            folder=self.folder, c2s=self.c2s_port, direct=self.direct_tls_port, http=self.http_port, upload=UPLOAD,
            domain=DOMAIN, modules=", ".join(f'"{m}"' for m in (*MODULES, *(("external_services",) if ice else ()))),
            upload_component=component, external_services=EXTERNAL_SERVICES if ice else ""))
        if self._as_prosody:
            entry = pwd.getpwnam("prosody")
            for path in [self.folder, *self.folder.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    # -- life ---------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts clients."""
        log = self.folder / "prosody.log"
        seen = log.read_text() if log.exists() else ""
        self._process = subprocess.Popen(
            ["prosody", "--config", str(self.config), "-F"], **self._as_owner(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        ready = f"Activated service 'c2s' on [127.0.0.1]:{self.c2s_port}"
        while ready not in (log.read_text()[len(seen):] if log.exists() else ""):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Prosody did not start: {log.read_text()[-2000:] if log.exists() else 'no log'}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (its data stays: `start` again brings the same accounts and offline messages back)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def register(self, user: str, password: str) -> str:
        """Create an account; its bare JID."""
        subprocess.run(["prosodyctl", "--config", str(self.config), "register", user, DOMAIN, password],
                       **self._as_owner(), check=True, capture_output=True, timeout=20)
        return f"{user}@{DOMAIN}"

    def _as_owner(self) -> dict[str, str]:
        return {"user": "prosody", "group": "prosody"} if self._as_prosody else {}

    # -- certificates ------------------------------------------------------------------------
    def _write_certificates(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skype-fastagi test CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for host in (DOMAIN, UPLOAD):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                    .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                    .sign(ca_key, hashes.SHA256()))
            (self.folder / "certs" / f"{host}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (self.folder / "certs" / f"{host}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))


def main() -> None:
    """`cd tests && python -m xmpp.server alice bob`: a server with these users (password `secret`) until Ctrl-C."""
    import sys

    server = Prosody()
    server.start()
    try:
        users = [server.register(name, "secret") for name in sys.argv[1:]]
        print(f"Prosody on 127.0.0.1:{server.c2s_port} (STARTTLS), {server.direct_tls_port} (direct TLS), "
              f"HTTP upload on {server.http_port}; CA {server.ca_file}; users {', '.join(users) or 'none'} "
              f"(password secret); folder {server.folder}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.remove()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
