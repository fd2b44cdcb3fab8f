"""Config errors (exit 78, before touching any socket) and other startup
failures (exit 1, naming the listener and the address)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from conftest import (
    BUILTIN_PLUGINS,
    EX_CONFIG,
    EX_STARTUP,
    Daemon,
    describe_result,
    free_port,
    is_refused,
    make_config,
    run_tulipd,
    tail,
    tcp_listener,
    unix_listener,
    write_config,
)


def base_config(tmp_path: Path) -> dict:
    """Three valid listeners: [0] echo/tcp, [1] echo/unix, [2] daytime/tcp."""
    return make_config(
        tcp_listener("echo", "echo"),
        unix_listener("echo-unix", "echo", tmp_path / "echo.sock", mode="0660"),
        tcp_listener("daytime", "daytime", options={"format": "rfc3339"}),
    )


def expect_config_error(how: str, config, tmp_path: Path, daemon: Daemon, filename: str = "tulipd.json"):
    """Run `tulipd check` or `tulipd run` on `config` and assert exit 78.
    Returns (stdout, stderr, config_path)."""
    if how == "check":
        path = write_config(tmp_path / filename, config)
        r = run_tulipd(["check", "--config", str(path)])
        assert r.returncode == EX_CONFIG, f"expected exit {EX_CONFIG}\n{describe_result(r)}"
        assert not re.search(r"^ok$", r.stdout, re.M), f"`check` printed ok\n{describe_result(r)}"
        return r.stdout, r.stderr, path
    assert how == "run"
    path = write_config(tmp_path / filename, config)
    daemon.start({}, args=["run", "--config", str(path)], wait_ready=False)
    daemon.wait(timeout=10, returncode=EX_CONFIG)
    return daemon.stdout_text, daemon.stderr_text, path


HOW = pytest.mark.parametrize("how", ["check", "run"])


# --------------------------------------------------------------------------
# JSON syntax errors

SYNTAX_ERROR_ON_LINE_3 = (
    "{\n"
    '  "log": {"level": "info", "format": "text"},\n'
    '  "shutdown": @\n'  # the '@' is line 3, column 15 (1-based)
    "}\n"
)


@HOW
def test_json_syntax_error_reports_file_and_line(how, tmp_path, daemon):
    _, err, path = expect_config_error(how, SYNTAX_ERROR_ON_LINE_3, tmp_path, daemon)
    m = re.search(rf"(\S*{re.escape(path.name)}):(\d+):(\d+):", err)
    assert m, f"stderr has no FILE:LINE:COLUMN: for {path.name}\n--- stderr ---\n{tail(err)}"
    assert m.group(1).endswith(path.name)
    assert m.group(2) == "3", f"syntax error is on line 3, stderr says line {m.group(2)}\n--- stderr ---\n{tail(err)}"


def test_json_syntax_error_column_points_at_offending_character(tmp_path, daemon):
    _, err, path = expect_config_error("check", SYNTAX_ERROR_ON_LINE_3, tmp_path, daemon)
    m = re.search(rf"{re.escape(path.name)}:3:(\d+):", err)
    assert m, f"stderr has no {path.name}:3:COLUMN:\n--- stderr ---\n{tail(err)}"
    assert m.group(1) == "15", (
        f"the unexpected '@' is at column 15 (1-based), stderr says column {m.group(1)}\n--- stderr ---\n{tail(err)}"
    )


@pytest.mark.parametrize(
    "text",
    ["", "{\n", '{"listeners": [\n', "[1, 2, 3]\n", "null\n"],
    ids=["empty-file", "truncated-object", "truncated-array", "array-top-level", "null-top-level"],
)
def test_unparsable_or_non_object_config_is_a_config_error(text, tmp_path, daemon):
    _, err, path = expect_config_error("check", text, tmp_path, daemon)
    assert path.name in err, f"error does not name the file {path.name}\n--- stderr ---\n{tail(err)}"


def test_missing_config_file_is_a_config_error(tmp_path):
    missing = tmp_path / "does-not-exist.json"
    r = run_tulipd(["check", "--config", str(missing)])
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert missing.name in r.stderr, f"error does not name the missing file\n{describe_result(r)}"


# --------------------------------------------------------------------------
# Unknown keys


def _set(config: dict, dotted: str, value) -> None:
    node = config
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value


UNKNOWN_KEY_PATHS = [
    "bogus",
    "log.bogus",
    "shutdown.bogus",
    "listeners[0].bogus",
    "listeners[0].tcp.bogus",
    "listeners[1].unix.bogus",
    "listeners[2].tcp.bogus",
]


@HOW
@pytest.mark.parametrize("key_path", UNKNOWN_KEY_PATHS)
def test_unknown_key_is_rejected_naming_its_path(how, key_path, tmp_path, daemon):
    config = base_config(tmp_path)
    _set(config, key_path, 1)
    _, err, _ = expect_config_error(how, config, tmp_path, daemon)
    assert key_path in err, f"error does not name the key path {key_path!r}\n--- stderr ---\n{tail(err)}"


# --------------------------------------------------------------------------
# Unknown plugin


@HOW
def test_unknown_plugin_is_rejected_and_known_plugins_are_listed(how, tmp_path, daemon):
    config = base_config(tmp_path)
    config["listeners"][1]["protocol"] = "gopher"
    _, err, _ = expect_config_error(how, config, tmp_path, daemon)
    assert "gopher" in err, f"error does not name the unknown plugin\n--- stderr ---\n{tail(err)}"
    assert "listeners[1]" in err, f"error does not name the listener's key path\n--- stderr ---\n{tail(err)}"
    missing = [p for p in BUILTIN_PLUGINS if not re.search(rf"\b{p}\b", err)]
    assert not missing, f"error does not list the known plugins {missing}\n--- stderr ---\n{tail(err)}"


# --------------------------------------------------------------------------
# Bad plugin options


@HOW
@pytest.mark.parametrize(
    "index, options, key_path",
    [
        (2, {"format": "nope"}, "listeners[2].options.format"),
        (2, {"formt": "rfc3339"}, "listeners[2].options.formt"),
        (2, {"format": 5}, "listeners[2].options.format"),
        (0, {"bogus": True}, "listeners[0].options.bogus"),
    ],
    ids=["daytime-bad-format-value", "daytime-misspelled-key", "daytime-format-wrong-type", "echo-unknown-option"],
)
def test_bad_plugin_options_are_rejected_naming_the_option_path(how, index, options, key_path, tmp_path, daemon):
    config = base_config(tmp_path)
    config["listeners"][index]["options"] = options
    _, err, _ = expect_config_error(how, config, tmp_path, daemon)
    assert key_path in err, f"error does not name {key_path!r}\n--- stderr ---\n{tail(err)}"


# --------------------------------------------------------------------------
# Other schema violations


def _mutations(tmp_path: Path):
    def port_too_big(c):
        c["listeners"][0]["tcp"]["port"] = 70000

    def port_is_string(c):
        c["listeners"][0]["tcp"]["port"] = "7007"

    def missing_protocol(c):
        del c["listeners"][2]["protocol"]

    def missing_name(c):
        del c["listeners"][2]["name"]

    def two_kinds(c):
        c["listeners"][0]["unix"] = {"path": str(tmp_path / "both.sock")}

    def no_kind(c):
        del c["listeners"][2]["tcp"]

    def duplicate_name(c):
        c["listeners"][0]["name"] = "twin"
        c["listeners"][2]["name"] = "twin"

    def bad_log_level(c):
        c["log"]["level"] = "loud"

    def bad_log_format(c):
        c["log"]["format"] = "xml"

    def listeners_not_array(c):
        c["listeners"] = {"echo": c["listeners"][0]}

    def grace_is_string(c):
        c["shutdown"]["grace_seconds"] = "ten"

    return [
        ("port-out-of-range", port_too_big, ["listeners[0].tcp.port"]),
        ("port-wrong-type", port_is_string, ["listeners[0].tcp.port"]),
        ("missing-protocol", missing_protocol, ["listeners[2]", "protocol"]),
        ("missing-name", missing_name, ["listeners[2]", "name"]),
        ("two-listener-kinds", two_kinds, ["listeners[0]"]),
        ("no-listener-kind", no_kind, ["listeners[2]"]),
        ("duplicate-listener-name", duplicate_name, ["twin"]),
        ("bad-log-level", bad_log_level, ["log.level"]),
        ("bad-log-format", bad_log_format, ["log.format"]),
        ("listeners-not-an-array", listeners_not_array, ["listeners"]),
        ("grace-wrong-type", grace_is_string, ["shutdown.grace_seconds"]),
    ]


_MUTATION_IDS = [m[0] for m in _mutations(Path("/tmp"))]


@pytest.mark.parametrize("mutation_id", _MUTATION_IDS)
def test_schema_violation_is_a_config_error_naming_the_location(mutation_id, tmp_path, daemon):
    (_, mutate, needles) = next(m for m in _mutations(tmp_path) if m[0] == mutation_id)
    config = base_config(tmp_path)
    mutate(config)
    _, err, _ = expect_config_error("check", config, tmp_path, daemon)
    for needle in needles:
        assert needle in err, f"error does not mention {needle!r}\n--- stderr ---\n{tail(err)}"


# --------------------------------------------------------------------------
# No socket is touched on a config error


def _error_in_second_listener(kind: str):
    if kind == "unknown-plugin":
        return {"name": "broken", "protocol": "gopher", "tcp": {"host": "127.0.0.1", "port": free_port()}}
    if kind == "bad-options":
        return {
            "name": "broken",
            "protocol": "daytime",
            "tcp": {"host": "127.0.0.1", "port": free_port()},
            "options": {"format": "nope"},
        }
    if kind == "unknown-key":
        return {"name": "broken", "protocol": "echo", "tcp": {"host": "127.0.0.1", "port": free_port(), "bogus": 1}}
    raise AssertionError(kind)


@pytest.mark.parametrize("error_kind", ["unknown-plugin", "bad-options", "unknown-key"])
def test_config_error_exits_78_before_binding_any_listener(error_kind, short_tmp, daemon):
    sock_path = short_tmp / "valid.sock"
    config = make_config(
        tcp_listener("valid-tcp", "echo"),
        unix_listener("valid-unix", "echo", sock_path),
        _error_in_second_listener(error_kind),
    )
    daemon.start(config, wait_ready=False)
    addr = daemon.addr("valid-tcp")
    # Poll the valid port for as long as the process runs (bounded).
    accepted = 0
    deadline = time.monotonic() + 10
    while daemon.alive() and time.monotonic() < deadline:
        if not is_refused(addr, timeout=0.2):
            accepted += 1
        if sock_path.exists():
            break
        time.sleep(0.005)
    daemon.wait(timeout=5, returncode=EX_CONFIG)
    assert accepted == 0, f"the valid listener {addr} accepted {accepted} connection(s) despite the config error"
    assert is_refused(addr), f"something is listening on {addr} after the config error"
    assert not sock_path.exists(), f"the unix listener's socket file {sock_path} was created despite the config error"


# --------------------------------------------------------------------------
# Startup failures other than config errors: exit 1, naming listener and address


def _listening_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # SO_REUSEADDR left off
    s.bind(("127.0.0.1", port))
    s.listen(8)
    return s


def test_port_in_use_exits_1_naming_listener_and_address(daemon):
    busy = _listening_socket()
    try:
        port = busy.getsockname()[1]
        config = make_config(tcp_listener("busy-listener", "echo", port))
        daemon.start(config, wait_ready=False)
        daemon.wait(timeout=10, returncode=EX_STARTUP)
        err = daemon.stderr_text
        assert "busy-listener" in err, f"error does not name the listener\n--- stderr ---\n{tail(err)}"
        assert f"127.0.0.1:{port}" in err, f"error does not name 127.0.0.1:{port}\n--- stderr ---\n{tail(err)}"
    finally:
        busy.close()


def test_port_in_use_on_a_later_listener_exits_1_and_releases_the_others(daemon):
    busy = _listening_socket()
    try:
        port = busy.getsockname()[1]
        config = make_config(
            tcp_listener("fine", "echo"),
            tcp_listener("second-busy", "discard", port),
        )
        daemon.start(config, wait_ready=False)
        daemon.wait(timeout=10, returncode=EX_STARTUP)
        err = daemon.stderr_text
        assert "second-busy" in err, f"error does not name the listener\n--- stderr ---\n{tail(err)}"
        assert f"127.0.0.1:{port}" in err, f"error does not name 127.0.0.1:{port}\n--- stderr ---\n{tail(err)}"
        assert is_refused(daemon.addr("fine")), "the process exited but its other port still accepts"
    finally:
        busy.close()
