"""The client over HTTPS and mutual TLS, against a real `custos serve` with a [server.tls]
table (a throwaway CA made with openssl)."""

from __future__ import annotations

import shutil

import pytest
from conftest import make_pki, rows, start_server

from custos_client import Client, ConnectionFailed, Logger

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

MODEL = "tls-model"
CLIENT_NAME = "py-client"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("pki"), CLIENT_NAME)
    config = f"""
[limits]
ingest_per_second = 1000
ingest_burst = 1000

[server.tls]
cert_file = "{pki['server.pem']}"
key_file = "{pki['server.key']}"
client_ca_file = "{pki['ca.pem']}"
require_client_cert = false

[[server.tls.client_identities]]
subject = "{CLIENT_NAME}"
grants = [{{ action = "predictions:write", model = "{MODEL}" }},
          {{ action = "labels:write", model = "{MODEL}" }}]
"""
    server = start_server(tmp_path_factory, "custos-tls", config, ca_file=pki["ca.pem"])
    server.new_model(name=MODEL)
    yield server, pki
    server.stop()


def test_client_certificate_without_a_token(tls_server, monkeypatch):
    server, pki = tls_server
    monkeypatch.delenv("CUSTOS_TOKEN", raising=False)
    monkeypatch.delenv("CUSTOS_TOKEN_FILE", raising=False)
    client = Client(server.url, ca_file=pki["ca.pem"], client_cert=pki["client.pem"], client_key=pki["client.key"])
    assert not client.has_token
    assert client.whoami()["actor"] == f"service:{CLIENT_NAME}"
    assert client.log_predictions(MODEL, rows(20))["accepted"] == 20
    with Logger(client, MODEL, batch_rows=10) as logger:
        logger.log_predictions(rows(30))
        assert logger.flush(timeout=30)
        assert logger.stats().accepted == 30


def test_server_certificate_must_chain_to_the_trust_anchor(tls_server):
    server, pki = tls_server
    # System roots do not know the test CA: the connection is refused before anything is sent.
    with pytest.raises(ConnectionFailed, match="TLS") as e:
        Client(server.url, token=server.admin_token).health()
    assert server.admin_token not in str(e.value)
    # With the CA, a token alone (no client certificate) works: require_client_cert = false.
    assert Client(server.url, token=server.admin_token, ca_file=pki["ca.pem"]).whoami()["kind"] == "bootstrap"
