"""TLS fixtures: a certificate authority made with openssl, and a server that speaks only TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._servers import ServerProcess, command


@dataclass(frozen=True)
class Certificates:
    """A certificate authority and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca: Path
    certificate: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client-side TLS context that trusts the CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_certificates(directory: Path) -> Certificates:
    """Generate a CA and a server certificate in `directory` with the openssl CLI.

    Raises FileNotFoundError if openssl is not installed, RuntimeError if it fails.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("The TLS fixtures need the openssl CLI: apt-get install openssl.")
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    certificate, key = directory / "server.crt", directory / "server.key"
    request, extensions = directory / "server.csr", directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=livestate test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", certificate, "-days", "2", "-extfile", extensions],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(
            [openssl, *map(str, step)], capture_output=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {step[0]} failed: {done.stderr.decode().strip()}")
    return Certificates(ca, certificate, key)


class TlsServerProcess(ServerProcess):
    """A Redis server that speaks only TLS on `port`, with a certificate from `certificates`.

    It runs Debian's `redis-server` (scripts/install-redis-server installs it):
    the embedded Valkey is built without TLS. Clients need not present a
    certificate. Raises FileNotFoundError if no redis-server is installed.
    """

    def __init__(
        self, certificates: Certificates, port: int | None = None, options: Sequence[str] = ()
    ) -> None:
        super().__init__(port, tls_server_binary(), options)
        self.certificates = certificates

    @property
    def url(self) -> str:
        """The rediss:// URL of database 0, trusting the fixture's CA."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certificates.ca}"

    def arguments(self) -> list[str]:
        plain = super().arguments()
        plain[plain.index("--port") + 1] = "0"
        return [*plain, "--tls-port", str(self.port), *tls_options(self.certificates)]

    def answers(self) -> bool:
        reply = str(command(self.port, "PING", context=self.certificates.client_context()))
        return reply == "PONG" or reply.startswith("NOAUTH")


def tls_server_binary() -> str:
    """Debian's redis-server, built with TLS (the embedded Valkey is not).

    Raises FileNotFoundError, saying what to run, if it is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(
            "The TLS servers need Debian's redis-server: run scripts/install-redis-server "
            "(as root) or apt-get install redis-server."
        )
    return binary


def tls_options(certificates: Certificates) -> tuple[str, ...]:
    return (
        "--tls-cert-file", str(certificates.certificate), "--tls-key-file", str(certificates.key),
        "--tls-ca-cert-file", str(certificates.ca), "--tls-auth-clients", "no",
    )  # fmt: skip
