"""The Prometheus endpoint (issue 6): GET /metrics over HTTP/1.1, text format, a `listener`
label where it applies."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import time

from conftest import (
    connect_tcp,
    echo_roundtrip,
    free_port,
    make_config,
    recv_exactly,
    run_tulipd,
    tcp_listener,
)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(port: int) -> dict[str, float]:
    """Every sample as {'name{labels}': value}; checks the exposition format on the way."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    conn.close()
    samples = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_metrics_follow_the_traffic(daemon):
    port = free_port()
    echo = tcp_listener("echo", "echo")
    echo["limits"] = {"max_connections_per_source": 1}
    config = make_config(
        echo,
        {"name": "udp", "protocol": "echo", "udp": {"host": "127.0.0.1", "port": free_port()}},
    )
    config["metrics"] = {"tcp": {"host": "127.0.0.1", "port": port}}
    daemon.start(config)
    # The fixture's readiness probe is a connection too: start once it is gone.
    deadline = time.monotonic() + 5
    while (baseline := scrape(port))['tulipd_connections_open{listener="echo"}'] != 0 or (
        baseline['tulipd_connections_accepted_total{listener="echo"}'] < 1
    ):
        assert time.monotonic() < deadline, baseline
        time.sleep(0.05)
    accepted = baseline['tulipd_connections_accepted_total{listener="echo"}']
    with daemon.connect("echo") as first:
        echo_roundtrip(first, b"0123456789")
        with connect_tcp(daemon.addr("echo")) as second:  # over the per-source cap: closed at once
            assert second.recv(1) == b""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(5)
        for i in range(3):
            udp.sendto(b"d%d" % i, ("127.0.0.1", daemon.config["listeners"][1]["udp"]["port"]))
            udp.recvfrom(64)
        udp.close()
        live = scrape(port)
    assert live['tulipd_connections_open{listener="echo"}'] == 1
    assert live['tulipd_connections_accepted_total{listener="echo"}'] == accepted + 1
    assert live['tulipd_connections_refused_total{listener="echo",reason="per_source"}'] == 1
    assert live['tulipd_bytes_received_total{listener="echo"}'] == 10 == live['tulipd_bytes_sent_total{listener="echo"}']
    assert live['tulipd_datagrams_received_total{listener="udp"}'] == 3
    assert 0 <= live["tulipd_loop_lag_seconds"] < 1
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while (after := scrape(port)).get('tulipd_reloads_total{result="success"}') != 1:
        assert time.monotonic() < deadline, after
        time.sleep(0.1)
    assert after['tulipd_connections_open{listener="echo"}'] == 0
    assert after['tulipd_connections_accepted_total{listener="echo"}'] == accepted + 1


def test_http_errors_and_keep_alive(daemon):
    port = free_port()
    config = make_config(tcp_listener("echo", "echo"))
    config["metrics"] = {"tcp": {"host": "127.0.0.1", "port": port}}
    daemon.start(config)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first_socket = None
    for _ in range(3):  # one connection, three scrapes
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200 and b"tulipd_loop_lag_seconds" in response.read()
        # http.client drops its socket when the server closes: the same one means keep-alive held.
        first_socket = first_socket or conn.sock
        assert conn.sock is first_socket and conn.sock is not None
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 404 and response.read() == b"metrics are at /metrics\n"
    conn.request("POST", "/metrics", body=b"")
    response = conn.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
    response.read()
    conn.close()
    with connect_tcp(("127.0.0.1", port)) as raw:
        raw.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        assert recv_exactly(raw, 24) == b"HTTP/1.1 400 Bad Request"
    with daemon.connect("echo") as echo:
        echo_roundtrip(echo, b"still serving\n")


def test_a_listener_at_its_limit_shows_in_status_and_metrics(daemon, short_tmp):
    port = free_port()
    echo = tcp_listener("echo", "echo")
    echo["limits"] = {"max_connections": 1}
    config = make_config(echo)
    config["metrics"] = {"tcp": {"host": "127.0.0.1", "port": port}}
    config["admin"] = {"path": f"{short_tmp}/admin.sock"}
    daemon.start(config)

    def settled(paused: int) -> tuple[dict, str]:
        deadline = time.monotonic() + 5
        while True:
            samples = scrape(port)
            state = json.loads(run_tulipd(["status", "--json", "--socket", f"{short_tmp}/admin.sock"]).stdout)
            if samples['tulipd_listener_paused_at_limit{listener="echo"}'] == paused:
                return samples, state["listeners"][0]["state"]
            assert time.monotonic() < deadline, (samples, state)
            time.sleep(0.05)

    with daemon.connect("echo") as held:
        echo_roundtrip(held, b"holding the only slot\n")
        samples, state = settled(1)
        assert state == "paused-at-limit" and samples['tulipd_connections_open{listener="echo"}'] == 1
    samples, state = settled(0)
    assert state == "serving"
