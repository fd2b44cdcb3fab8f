"""CLI surface: `plugins`, `check`, `run` vs. bare `--config`, the shipped default config."""

from __future__ import annotations

import json
import re
import signal
import socket

import pytest

from conftest import (
    BUILTIN_PLUGINS,
    EX_CONFIG,
    EX_OK,
    REPO,
    TULIPD,
    check_config,
    connect_tcp,
    describe_result,
    echo_roundtrip,
    make_config,
    run_tulipd,
    tcp_listener,
    unix_listener,
)


def _plugin_lines(stdout: str) -> dict[str, str]:
    """Map of first token -> line, for every non-empty output line."""
    lines = {}
    for line in stdout.splitlines():
        tokens = line.split()
        if tokens:
            lines.setdefault(tokens[0].rstrip(":,"), line)
    return lines


def test_plugins_command_lists_every_builtin_plugin_one_per_line():
    r = run_tulipd(["plugins"])
    assert r.returncode == EX_OK, describe_result(r)
    lines = _plugin_lines(r.stdout)
    missing = [p for p in BUILTIN_PLUGINS if p not in lines]
    assert not missing, f"`tulipd plugins` has no line starting with {missing}\n{describe_result(r)}"


def test_block_loop_is_in_tulipd_test_and_never_in_the_shipped_tulipd():
    """tulipd-test is tulipd plus the test-only block-loop plugin (it can block the loop on
    purpose, for the watchdog test); the shipped binary does not even contain its code."""
    shipped = run_tulipd(["plugins"])
    assert shipped.returncode == EX_OK, describe_result(shipped)
    assert "block-loop" not in _plugin_lines(shipped.stdout), describe_result(shipped)
    assert b"BlockLoop" not in TULIPD.read_bytes(), f"{TULIPD} links the test-only plugin"

    test_binary = TULIPD.parent / "tulipd-test"
    with_test = run_tulipd(["plugins"], binary=test_binary)
    assert with_test.returncode == EX_OK, describe_result(with_test)
    lines = _plugin_lines(with_test.stdout)
    assert set(lines) == set(_plugin_lines(shipped.stdout)) | {"block-loop"}, describe_result(with_test)


def test_block_loop_rejects_a_blocking_time_that_is_not_positive(tmp_path):
    config = make_config(tcp_listener("block", "block-loop", options={"seconds": 0}))
    path = tmp_path / "tulipd.json"
    path.write_text(json.dumps(config))
    r = run_tulipd(["check", "--config", str(path)], binary=TULIPD.parent / "tulipd-test")
    assert r.returncode == EX_CONFIG and "listeners[0].options.seconds" in r.stderr, describe_result(r)


@pytest.mark.parametrize("plugin", BUILTIN_PLUGINS)
def test_plugins_command_shows_listener_kinds_and_a_summary(plugin):
    r = run_tulipd(["plugins"])
    assert r.returncode == EX_OK, describe_result(r)
    line = _plugin_lines(r.stdout).get(plugin)
    assert line is not None, f"no line for {plugin}\n{describe_result(r)}"
    lowered = line.lower()
    # Every built-in is a stream plugin usable over tcp and unix listeners.
    for kind in ("tcp", "unix"):
        assert re.search(rf"\b{kind}\b", lowered), f"line for {plugin} does not mention listener kind {kind!r}: {line!r}"
    rest = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
    words = re.findall(r"[A-Za-z]{3,}", rest)
    assert len(words) >= 3, f"line for {plugin} has no readable summary: {line!r}"


def test_check_prints_ok_and_exits_zero_for_a_valid_config(tmp_path):
    config = make_config(
        tcp_listener("echo", "echo"),
        unix_listener("echo-unix", "echo", tmp_path / "echo.sock", mode="0660"),
        tcp_listener("daytime", "daytime", options={"format": "rfc3339"}),
    )
    r = check_config(config, tmp_path)
    assert r.returncode == EX_OK, describe_result(r)
    assert re.search(r"^ok$", r.stdout, re.M), f"`check` did not print `ok`\n{describe_result(r)}"


def test_check_does_not_bind_any_socket(tmp_path):
    """`check` validates without binding: it succeeds while the configured
    port is taken, and it does not create the unix socket file."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        sock_path = tmp_path / "never.sock"
        config = make_config(
            tcp_listener("echo", "echo", port),
            unix_listener("echo-unix", "echo", sock_path),
        )
        r = check_config(config, tmp_path)
        assert r.returncode == EX_OK, f"`check` must not bind (port {port} is in use by the test)\n{describe_result(r)}"
        assert re.search(r"^ok$", r.stdout, re.M), describe_result(r)
        assert not sock_path.exists(), f"`check` created {sock_path}"
    finally:
        busy.close()


def test_check_reports_errors_on_stderr_with_exit_78_and_no_ok(tmp_path):
    config = make_config(tcp_listener("echo", "no-such-plugin"))
    r = check_config(config, tmp_path)
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert r.stderr.strip(), f"`check` failed without an error message on stderr\n{describe_result(r)}"
    assert not re.search(r"^ok$", r.stdout, re.M), f"`check` printed ok for a bad config\n{describe_result(r)}"


@pytest.mark.parametrize(
    "args",
    [["run", "--config", "{config}"], ["--config", "{config}"]],
    ids=["run-subcommand", "bare-config-flag"],
)
def test_run_and_bare_config_flag_both_start_the_daemon(daemon, args):
    daemon.start(make_config(tcp_listener("echo", "echo")), args=args)
    with connect_tcp(daemon.addr("echo")) as s:
        echo_roundtrip(s, b"hello tulipd\n")
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


def test_shipped_default_config_passes_check():
    path = REPO / "config" / "tulipd.json"
    if not path.exists():
        pytest.skip(f"{path} does not exist yet")
    r = run_tulipd(["check", "--config", str(path)])
    assert r.returncode == EX_OK, describe_result(r)
    assert re.search(r"^ok$", r.stdout, re.M), describe_result(r)
