"""Fixtures that run a real `custos serve` for the client's tests.

The binary is `$CUSTOS_BIN`, default `target/debug/custos` relative to the repository root. Each
server gets a free loopback port, a fresh data directory and a config file; the administrator
credential is the bootstrap secret the server writes into its data directory on first start
(the same way the Rust end-to-end tests and tests/browser/run.sh obtain it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest
import requests

from custos_client import Client

REPO_ROOT = Path(__file__).resolve().parents[3]

# Generous budgets for the ordinary tests, so that they never meet a 429 by accident.
RELAXED_LIMITS = """
[limits]
ingest_per_second = 1000
ingest_burst = 1000
read_per_second = 1000
read_burst = 1000
"""


def custos_bin() -> Path:
    raw = os.environ.get("CUSTOS_BIN", "target/debug/custos")
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        pytest.fail(f"no custos binary at {path}: build it (cargo build -p custos) or set CUSTOS_BIN")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running `custos serve`."""

    def __init__(self, workdir: Path, config: str, *, ca_file: Optional[Path] = None) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        # With a [server.tls] table the server speaks HTTPS; ca_file is then its trust anchor.
        self.ca_file = ca_file
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        config_file = workdir / "custos.toml"
        config_file.write_text(config)
        self.log_file = workdir / "server.log"
        env = dict(os.environ, CUSTOS_LOG__LEVEL="warn")
        env.pop("CUSTOS_TOKEN", None)
        with open(self.log_file, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(custos_bin()),
                    "serve",
                    "--data-dir",
                    str(self.data),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--config",
                    str(config_file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._wait_healthy()
        self.admin_token = (self.data / "bootstrap-token").read_text().strip()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"custos exited early:\n{self.log_file.read_text()}")
            try:
                verify = str(self.ca_file) if self.ca_file else True
                if requests.get(self.url + "/healthz", timeout=2, verify=verify).status_code == 200:
                    if (self.data / "bootstrap-token").exists():
                        return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"custos did not become healthy:\n{self.log_file.read_text()}")

    def admin(self) -> Client:
        return Client(self.url, token=self.admin_token, ca_file=self.ca_file)

    def new_model(self, prefix: str = "m", name: Optional[str] = None) -> str:
        """Registers a model (event_id, ts, amount, country, score), by default under a fresh
        name, and returns its name."""
        name = name or f"{prefix}-{uuid.uuid4().hex[:8]}"
        with self.admin() as admin:
            admin.create_model(
                {
                    "name": name,
                    "id_field": "event_id",
                    "timestamp_field": "ts",
                    "features": [
                        {"name": "amount", "type": "numeric"},
                        {"name": "country", "type": "categorical"},
                    ],
                    "prediction": {"name": "score", "type": "binary_score"},
                }
            )
        return name

    def writer_token(self, model: str) -> str:
        """A token that may only write predictions and labels of `model`."""
        with self.admin() as admin:
            created = admin.create_token(
                f"python client tests, {model}",
                [("predictions:write", model), ("labels:write", model)],
                expires_in_days=1,
            )
        return created["secret"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, config: str, *, ca_file: Optional[Path] = None
) -> Server:
    workdir = tmp_path_factory.mktemp(name)
    os.chmod(workdir, 0o700)
    return Server(workdir, config, ca_file=ca_file)


def make_pki(directory: Path, client_name: str) -> Dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate named
    `client_name`, made with the openssl command (keys 0600, as the server demands)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=custos python client test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for leaf, subject, extensions in (
        ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", f"/CN={client_name}", "extendedKeyUsage=clientAuth\n"),
    ):
        (directory / f"{leaf}.ext").write_text("basicConstraints=CA:FALSE\n" + extensions)
        openssl("req", *ec, "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr", "-subj", subject)
        openssl("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{leaf}.pem", "-days", "2", "-extfile", f"{leaf}.ext")
        os.chmod(directory / f"{leaf}.key", 0o600)
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with budgets large enough never to refuse the ordinary tests."""
    s = start_server(tmp_path_factory, "custos", RELAXED_LIMITS)
    yield s
    s.stop()


@pytest.fixture()
def model(server: Server) -> str:
    return server.new_model()


@pytest.fixture()
def writer(server: Server, model: str) -> Iterator[Client]:
    with Client(server.url, token=server.writer_token(model)) as c:
        yield c


@pytest.fixture()
def admin(server: Server) -> Iterator[Client]:
    with server.admin() as c:
        yield c


def rows(n: int, start: int = 0, *, prefix: Optional[str] = None) -> list:
    """`n` valid prediction rows with unique event ids, event times in the last hours."""
    base = time.time() - 3 * 3600
    tag = prefix or uuid.uuid4().hex[:6]
    return [
        {
            "event_id": f"{tag}-{i}",
            "ts": base + (i % 7200),
            "amount": float(i % 100),
            "country": ["DE", "FR", "US"][i % 3],
            "score": (i % 10) / 10,
        }
        for i in range(start, start + n)
    ]


def dump(obj: Dict) -> str:
    return json.dumps(obj, indent=1)
