"""TLS listeners (issue 5): Python's ssl module against tulipd's OpenSSL, with a CA made at test time."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from test_metrics import scrape

from conftest import (
    MiB,
    first_mismatch,
    free_port,
    make_config,
    run_tulipd,
    describe_result,
    tcp_listener,
    unix_listener,
    write_config,
)

EX_CONFIG = 78


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca.pem/ca.key, server.pem/server.key (localhost, 127.0.0.1), client.pem/client.key, other.key."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=Tulip Blackbox CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={'localhost' if name == 'server' else 'tulip-client'}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key", cwd=d)
    return d


def _tls_block(pki: Path, **extra) -> dict:
    block = {"certificate_chain": str(pki / "server.pem"), "private_key": str(pki / "server.key")}
    block.update(extra)
    return block


def _client_context(pki: Path, version: str | None = None, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return ctx


def _connect(addr, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(addr, timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _echo_exact(s: ssl.SSLSocket, size: int, chunk: int = 64 * 1024) -> None:
    """Sends `size` random bytes a chunk at a time, reading each chunk's echo back before the next
    (an SSLSocket must not be read and written from two threads at once)."""
    payload = os.urandom(size)
    received = bytearray()
    for start in range(0, size, chunk):
        s.sendall(payload[start:start + chunk])
        target = min(size, start + chunk)
        while len(received) < target:
            data = s.recv(65536)
            assert data, f"EOF after {len(received)} of {size} bytes"
            received.extend(data)
    assert bytes(received) == payload, first_mismatch(payload, bytes(received))


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_echo_one_mebibyte_byte_exact(version, daemon, pki):
    daemon.start(make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki)}))
    with _connect(daemon.addr("echo-tls"), _client_context(pki, version)) as s:
        assert s.version() == ("TLSv1.2" if version == "1.2" else "TLSv1.3")
        _echo_exact(s, MiB)
        s.unwrap()  # close_notify both ways
    daemon.assert_alive()


def test_unix_listener_serves_tls(daemon, pki, short_tmp):
    path = short_tmp / "tls.sock"
    daemon.start(make_config({**unix_listener("echo-unix-tls", "echo", path), "tls": _tls_block(pki)}))
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.connect(str(path))
    with _client_context(pki).wrap_socket(raw, server_hostname="localhost") as s:
        _echo_exact(s, 64 * 1024)


def test_min_version_13_refuses_a_tls12_client(daemon, pki):
    daemon.start(make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki, min_version="1.3")}))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _connect(daemon.addr("echo-tls"), _client_context(pki, "1.2"))
    with _connect(daemon.addr("echo-tls"), _client_context(pki, "1.3")) as s:
        _echo_exact(s, 1024)


def test_alpn_is_negotiated_in_server_preference(daemon, pki):
    daemon.start(make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki, alpn=["h2", "http/1.1"])}))
    ctx = _client_context(pki)
    ctx.set_alpn_protocols(["http/1.1", "h2"])
    with _connect(daemon.addr("echo-tls"), ctx) as s:
        assert s.selected_alpn_protocol() == "h2"


def test_mutual_tls_accepts_a_good_client_certificate_and_refuses_none(daemon, pki):
    daemon.start(make_config({**tcp_listener("mtls", "echo"), "tls": _tls_block(pki, client_ca=str(pki / "ca.pem"))}))
    with _connect(daemon.addr("mtls"), _client_context(pki, cert=True)) as s:
        _echo_exact(s, 4096)
    # Without a certificate: TLS 1.3 reports the refusal on the first read after the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with _connect(daemon.addr("mtls"), _client_context(pki)) as s:
            s.sendall(b"hello")
            data = s.recv(10)
            if not data:
                raise ConnectionResetError("closed without data")
    daemon.assert_alive()


def test_handshake_timeout_closes_a_silent_client(daemon, pki):
    daemon.start(make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki, handshake_timeout_seconds=0.5)}))
    silent = socket.create_connection(daemon.addr("echo-tls"), timeout=10)
    start = time.monotonic()
    try:
        assert silent.recv(1) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - start < 5
    silent.close()
    # A client that stalls after its first bytes is closed too.
    stalled = socket.create_connection(daemon.addr("echo-tls"), timeout=10)
    stalled.sendall(b"\x16\x03\x01\x00\xff")  # a record header promising more than it sends
    try:
        assert stalled.recv(1) == b""
    except ConnectionResetError:
        pass
    stalled.close()
    with _connect(daemon.addr("echo-tls"), _client_context(pki)) as s:
        _echo_exact(s, 1024)


def test_plaintext_garbage_is_closed_while_another_tls_client_carries_on(daemon, pki):
    metrics_port = free_port()
    config = make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki)})
    config["metrics"] = {"tcp": {"host": "127.0.0.1", "port": metrics_port}}
    daemon.start(config)
    # The readiness probe connected and left before a handshake: a failure too, counted first.
    metric = 'tulipd_tls_handshake_failures_total{listener="echo-tls"}'
    deadline = time.monotonic() + 5
    while (baseline := scrape(metrics_port)[metric]) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    with _connect(daemon.addr("echo-tls"), _client_context(pki)) as good:
        bad = socket.create_connection(daemon.addr("echo-tls"), timeout=10)
        bad.sendall(b"GET / HTTP/1.0\r\n\r\n" * 4)
        try:
            while bad.recv(4096):
                pass
        except ConnectionResetError:
            pass
        bad.close()
        _echo_exact(good, 64 * 1024)
    deadline = time.monotonic() + 5
    while "TLS handshake failed" not in daemon.stderr_text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS handshake failed" in daemon.stderr_text, daemon.stderr_text[-2000:]
    failures = scrape(metrics_port)['tulipd_tls_handshake_failures_total{listener="echo-tls"}']
    assert failures == baseline + 1, (baseline, failures)


def test_check_loads_the_files(pki, tmp_path):
    ok = write_config(tmp_path / "ok.json", make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki)}))
    r = run_tulipd(["check", "--config", str(ok)])
    assert r.returncode == 0, describe_result(r)


def test_check_refuses_a_key_that_does_not_match(pki, tmp_path):
    block = _tls_block(pki, private_key=str(pki / "other.key"))
    bad = write_config(tmp_path / "bad.json", make_config({**tcp_listener("echo-tls", "echo"), "tls": block}))
    r = run_tulipd(["check", "--config", str(bad)])
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert "listeners[0].tls.private_key" in r.stderr, describe_result(r)
    assert "does not match" in r.stderr, describe_result(r)


def test_check_refuses_a_missing_certificate(pki, tmp_path):
    block = _tls_block(pki, certificate_chain=str(tmp_path / "missing.pem"))
    bad = write_config(tmp_path / "bad.json", make_config({**tcp_listener("echo-tls", "echo"), "tls": block}))
    r = run_tulipd(["check", "--config", str(bad)])
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert "listeners[0].tls.certificate_chain" in r.stderr, describe_result(r)


# --------------------------------------------------------------------------
# Certificate reload on SIGHUP (issue 5 item 4) and TLS on sockets passed by systemd


def _fingerprint(s: ssl.SSLSocket) -> str:
    return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def _file_fingerprint(pem: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.read_text())).hexdigest()


def _issue_server_cert(pki: Path, name: str) -> None:
    """A second certificate for localhost from the same CA: NAME.pem and NAME.key in `pki`."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", "/CN=localhost", cwd=pki)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", "server.ext", cwd=pki)


def _sighup_and_wait(daemon, outcome: str) -> None:
    count = daemon.stderr_text.count(outcome)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr(r"(?s)" + (re.escape(outcome) + ".*?") * (count + 1), timeout=10)


def test_sighup_rereads_the_certificate_for_new_connections_only(daemon, pki, tmp_path):
    _issue_server_cert(pki, "renewed")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki / "server.pem", live / "cert.pem")
    shutil.copy(pki / "server.key", live / "key.pem")
    block = {"certificate_chain": str(live / "cert.pem"), "private_key": str(live / "key.pem")}
    daemon.start(make_config({**tcp_listener("echo-tls", "echo"), "tls": block}))
    ctx = _client_context(pki)
    with _connect(daemon.addr("echo-tls"), ctx) as established:
        assert _fingerprint(established) == _file_fingerprint(pki / "server.pem")
        _echo_exact(established, 4096)
        # The config file is unchanged: only the files behind it are.
        shutil.copy(pki / "renewed.pem", live / "cert.pem")
        shutil.copy(pki / "renewed.key", live / "key.pem")
        _sighup_and_wait(daemon, "configuration reloaded")
        with _connect(daemon.addr("echo-tls"), ctx) as fresh:
            assert _fingerprint(fresh) == _file_fingerprint(pki / "renewed.pem")
            _echo_exact(fresh, 4096)
        _echo_exact(established, 4096)
        # A broken certificate: the reload fails naming listener and file, the last good
        # certificate stays in use.
        (live / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        _sighup_and_wait(daemon, "reload failed")
        failed = [line for line in daemon.stderr_text.splitlines() if "reload failed" in line][-1]
        assert 'listener \\"echo-tls\\"' in failed and str(live / "cert.pem") in failed, failed
        assert "listeners[0].tls.certificate_chain" in failed, failed
        with _connect(daemon.addr("echo-tls"), ctx) as fresh:
            assert _fingerprint(fresh) == _file_fingerprint(pki / "renewed.pem")
            _echo_exact(fresh, 1024)
        _echo_exact(established, 4096)
    daemon.stop(signal.SIGTERM, timeout=15)


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate is not installed")
def test_socket_passed_by_systemd_serves_tls(daemon, pki):
    port = free_port()
    config = make_config({**tcp_listener("echo-tls", "echo", port), "tls": _tls_block(pki)})
    daemon.argv_prefix = [shutil.which("systemd-socket-activate"), "-l", f"127.0.0.1:{port}", "--fdname=echo-tls"]
    daemon.start(config, wait_ready=False)
    daemon.wait_for_stderr(r"Listening on")
    with _connect(("127.0.0.1", port), _client_context(pki)) as s:  # the first connection starts tulipd
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        _echo_exact(s, 64 * 1024)
    daemon.wait_for_stderr(r"listening on a socket passed by systemd")
    daemon.stop(signal.SIGTERM, timeout=10)
