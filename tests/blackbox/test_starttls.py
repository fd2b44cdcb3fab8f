"""The starttls-echo plugin (loop.startTLS on the server side, ASYNCIO-SPEC §19) and a protocol scan
of a TLS listener with sslscan."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    MiB,
    connect_tcp,
    connect_unix,
    describe_result,
    expect_eof,
    make_config,
    recv_exactly,
    run_tulipd,
    tcp_listener,
    unix_listener,
    write_config,
)
from test_tls import _client_context, _echo_exact, _tls_block, pki  # noqa: F401  (pki is a fixture)

EX_CONFIG = 78


def _options(pki: Path, **extra) -> dict:
    return _tls_block(pki, **extra)


def _starttls(raw: socket.socket, pki: Path) -> ssl.SSLSocket:
    """Plaintext echo first, then the upgrade: OK\\r\\n arrives in plaintext before the handshake (TLS-5)."""
    raw.sendall(b"before the upgrade\n")
    assert recv_exactly(raw, 19) == b"before the upgrade\n"
    raw.sendall(b"STARTTLS\r\n")
    assert recv_exactly(raw, 4) == b"OK\r\n"
    return _client_context(pki).wrap_socket(raw, server_hostname="localhost")


def test_starttls_echoes_one_mebibyte_both_ways_then_close_notify_both_ways(daemon, pki):
    daemon.start(make_config(tcp_listener("st", "starttls-echo", options=_options(pki))))
    raw = connect_tcp(daemon.addr("st"), timeout=10)
    peer = "peer=127.0.0.1:%d " % raw.getsockname()[1]
    s = _starttls(raw, pki)
    assert s.version() in ("TLSv1.2", "TLSv1.3")
    _echo_exact(s, MiB)
    # STARTTLS inside TLS is just data.
    s.sendall(b"STARTTLS\r\n")
    assert s.recv(64) == b"STARTTLS\r\n"
    # TLS-9/TLS-11: our close_notify is EOF to tulipd, which answers with its own: unwrap() returns
    # only once it has arrived, and the plain socket then sees tulipd's FIN.
    plain = s.unwrap()
    assert expect_eof(plain) == "eof"
    plain.close()
    # The daemon saw the peer's close_notify as an orderly end: no error on the connection.
    # (The readiness probe's connection logs a line of its own: wait for this connection's.)
    def closed_lines() -> list[str]:
        return [l for l in daemon.stderr_text.splitlines() if "connection closed" in l and peer in l + " "]

    deadline = time.monotonic() + 5
    while not closed_lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    closed = closed_lines()
    assert closed and "error" not in closed[-1], daemon.stderr_text[-2000:]
    # One connection: the plaintext before the upgrade counts too (19 echoed, STARTTLS in, OK out).
    assert f"bytes_in={19 + 10 + MiB + 10} " in closed[-1], closed[-1]
    assert f"bytes_out={19 + 4 + MiB + 10} " in closed[-1], closed[-1]
    daemon.assert_alive()


def test_starttls_over_a_unix_listener(daemon, pki, short_tmp):
    path = short_tmp / "st.sock"
    daemon.start(make_config(unix_listener("st-unix", "starttls-echo", path, options=_options(pki))))
    s = _starttls(connect_unix(path, timeout=10), pki)
    _echo_exact(s, 64 * 1024)
    s.unwrap().close()


def test_a_failed_upgrade_closes_only_that_connection(daemon, pki):
    daemon.start(make_config(tcp_listener("st", "starttls-echo", options=_options(pki))))
    raw = connect_tcp(daemon.addr("st"), timeout=10)
    raw.sendall(b"STARTTLS\r\n")
    assert recv_exactly(raw, 4) == b"OK\r\n"
    raw.sendall(b"this is no ClientHello\r\n" * 8)
    assert expect_eof(raw, allow_reset=True) in ("eof", "reset")
    raw.close()
    s = _starttls(connect_tcp(daemon.addr("st"), timeout=10), pki)
    _echo_exact(s, 4096)
    s.close()
    daemon.assert_alive()


def test_check_loads_the_plugin_files(pki, tmp_path):
    ok = write_config(tmp_path / "ok.json", make_config(tcp_listener("st", "starttls-echo", options=_options(pki))))
    r = run_tulipd(["check", "--config", str(ok)])
    assert r.returncode == 0, describe_result(r)


@pytest.mark.parametrize(
    "bad, key, text",
    [
        ({"private_key": "other.key"}, "listeners[0].options.private_key", "does not match"),
        ({"certificate_chain": "missing.pem"}, "listeners[0].options.certificate_chain", "missing.pem"),
    ],
)
def test_check_names_the_option_of_a_bad_file(pki, tmp_path, bad, key, text):
    options = _options(pki, **{k: str(pki / v) for k, v in bad.items()})
    path = write_config(tmp_path / "bad.json", make_config(tcp_listener("st", "starttls-echo", options=options)))
    r = run_tulipd(["check", "--config", str(path)])
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert key in r.stderr and text in r.stderr, describe_result(r)


def test_check_refuses_unknown_and_missing_options(pki, tmp_path):
    options = {**_options(pki), "handshake_timeout_seconds": 3}
    path = write_config(tmp_path / "bad.json", make_config(tcp_listener("st", "starttls-echo", options=options)))
    r = run_tulipd(["check", "--config", str(path)])
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert "listeners[0].options.handshake_timeout_seconds" in r.stderr, describe_result(r)
    path = write_config(tmp_path / "none.json", make_config(tcp_listener("st", "starttls-echo")))
    r = run_tulipd(["check", "--config", str(path)])
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert "certificate_chain" in r.stderr, describe_result(r)


# sslscan -------------------------------------------------------------------

_WEAK_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1")
_WEAK_CIPHER = re.compile(r"NULL|EXP|RC4|anon", re.IGNORECASE)


def _sslscan(addr: tuple[str, int]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Protocol states (`TLSv1.2 -> enabled`) and accepted (protocol, cipher) pairs."""
    binary = shutil.which("sslscan")
    assert binary, "sslscan is not installed (make deps installs it)"
    r = subprocess.run(
        [binary, "--no-colour", "--no-heartbleed", "--no-renegotiation", "--no-compression", "--no-fallback",
         "--timeout=3", f"{addr[0]}:{addr[1]}"],
        capture_output=True, text=True, timeout=20,
    )
    assert r.returncode == 0, describe_result(r)
    protocols: dict[str, str] = {}
    ciphers: list[tuple[str, str]] = []
    for line in r.stdout.splitlines():
        m = re.match(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)\s*$", line)
        if m:
            protocols[m.group(1)] = m.group(2)
        m = re.match(r"^(Preferred|Accepted)\s+(\S+)\s+\d+ bits\s+(\S+)", line)
        if m:
            ciphers.append((m.group(2), m.group(3)))
    assert protocols and ciphers, f"unparsable sslscan output:\n{r.stdout}"
    return protocols, ciphers


def test_sslscan_finds_only_tls12_and_tls13_with_strong_ciphers(daemon, pki):
    daemon.start(make_config({**tcp_listener("echo-tls", "echo"), "tls": _tls_block(pki)}))
    protocols, ciphers = _sslscan(daemon.addr("echo-tls"))
    assert protocols.get("TLSv1.2") == "enabled" and protocols.get("TLSv1.3") == "enabled", protocols
    for weak in _WEAK_PROTOCOLS:
        assert protocols.get(weak, "disabled") == "disabled", (weak, protocols)
    assert not [c for c in ciphers if c[0] in _WEAK_PROTOCOLS], ciphers
    assert not [c for c in ciphers if _WEAK_CIPHER.search(c[1])], ciphers
    assert {c[0] for c in ciphers} == {"TLSv1.2", "TLSv1.3"}, ciphers
    daemon.assert_alive()


def test_plugins_command_lists_starttls_echo_for_tcp_and_unix():
    r = run_tulipd(["plugins"])
    assert r.returncode == 0, describe_result(r)
    line = next((l for l in r.stdout.splitlines() if l.split()[:1] == ["starttls-echo"]), None)
    assert line is not None, describe_result(r)
    assert re.search(r"\btcp\b", line) and re.search(r"\bunix\b", line) and "STARTTLS" in line, line


def test_admin_connections_follow_the_upgrade(daemon, pki, short_tmp):
    """After STARTTLS the TLS transport carries the connection: `connections` lists it once, with
    the plaintext bytes and the TLS ones together."""
    config = make_config(tcp_listener("st", "starttls-echo", options=_options(pki)))
    config["admin"] = {"path": f"{short_tmp}/admin.sock"}
    daemon.start(config)
    raw = connect_tcp(daemon.addr("st"), timeout=10)
    peer = "127.0.0.1:%d" % raw.getsockname()[1]
    with _starttls(raw, pki) as s:
        _echo_exact(s, 1000, chunk=1000)
        listed = run_tulipd(["connections", "st", "--json", "--socket", f"{short_tmp}/admin.sock"])
        mine = [c for c in json.loads(listed.stdout)["connections"] if c["peer"] == peer]
        assert len(mine) == 1, listed.stdout
        assert mine[0]["bytes_in"] == 19 + 10 + 1000 and mine[0]["bytes_out"] == 19 + 4 + 1000, mine
