"""Every way a ``callbook`` command can fail ends in one line on stderr and a documented exit code.

The mapping (signaling/sdk/cli_failures.py) is checked against the close codes docs/protocol.md 11.3
lists; then real commands are driven into each failure against real servers, stores and sockets.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from directory import operators
from directory.store import Store
from signaling.config import Config
from signaling.sdk.cli_failures import (
    CLOSE_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TRY_LATER,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    describe,
)
from signaling.sdk.client import Profile
from signaling.sdk.line import Line, LineClosed
from tests.conftest import Server, start_server, stop_server
from tests.test_cli import REPO, Cli, Run
from tests.test_cli import cli as cli  # the fixture
from tests.valkey_process import ValkeyProcess

PROTOCOL = REPO / "docs" / "protocol.md"


def _documented_close_codes() -> set[int]:
    text = PROTOCOL.read_text()
    section = text[text.index("### 11.3 ") : text.index("### 11.4 ")]
    return {int(code) for code in re.findall(r"^\| `(\d{4})` \|", section, re.M)}


def test_every_documented_close_code_has_its_own_line_and_a_failing_exit() -> None:
    documented = _documented_close_codes()
    assert documented and set(CLOSE_CODES) == documented
    for code in documented:
        failure = describe(LineClosed(code))
        assert failure.exit_code != 0
        assert "\n" not in failure.line and f"close code {code}" in failure.line
    assert "close code 4999" in describe(LineClosed(4999)).line
    assert describe(LineClosed(None)).exit_code == EXIT_UNREACHABLE  # dropped: 1006


# -- Real commands, real failures ----------------------------------------------------------------


@asynccontextmanager
async def _running(cli: Cli, *args: str | Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A long-running command (``answer``), once it has printed its first line (``ready``)."""
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling.cli", *map(str, args),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=cli.home,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 60)
        assert first.startswith(b"ready "), first
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _ended(process: asyncio.subprocess.Process) -> Run:
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def _one_line(run: Run, exit_code: int) -> str:
    """Stdout may hold events printed before the failure; stderr holds exactly one line."""
    assert run.code == exit_code, run
    [line] = run.err.splitlines()
    assert line.startswith("callbook: ") and "Traceback" not in run.err, run.err
    return line


Cause = Callable[[Cli, Profile], Awaitable[None]]


async def _replace(cli: Cli, profile: Profile) -> None:
    line = Line(cli.api(profile.handle))
    await line.open()  # the same device again: the running command's connection is replaced
    await line.close()


async def _revoke(cli: Cli, profile: Profile) -> None:
    await cli.server.client().recover(
        profile.handle, profile.recovery_code or "", revoke_others=True
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cause", "exit_code", "expected"),
    [
        (_replace, EXIT_FAILED, "Replaced: this device connected again elsewhere"),
        (_revoke, EXIT_FAILED, "revoked or its account erased"),
        ("operator", EXIT_FAILED, "An operator disconnected this device. (close code 4002)"),
        ("interrupt", EXIT_INTERRUPTED, "callbook: Interrupted."),
    ],
    ids=["replaced_4000", "revoked_4001", "operator_4002", "ctrl_c"],
)  # fmt: skip
async def test_answer_ends_with_one_line_whatever_ends_its_connection(
    cli: Cli, store: Store, cause: Cause | str, exit_code: int, expected: str
) -> None:
    profile = await cli.enroll("alice")
    async with _running(cli, "answer", "--profile", cli.profile("alice")) as answering:
        if cause == "interrupt":
            answering.send_signal(signal.SIGINT)
        elif cause == "operator":
            token = await operators.create(store, "olga")
            path = f"/v1/operator/devices/{profile.account_id}/{profile.device_id}/disconnect"
            status, _ = await _post(cli.server, path, token, {"reason": "a test of the CLI"})
            assert status == 204
        else:
            assert callable(cause)
            await cause(cli, profile)
        line = _one_line(await _ended(answering), exit_code)
    assert expected in line


async def _post(server: Server, path: str, token: str, body: object) -> tuple[int, bytes]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.read()


@pytest.mark.slow
async def test_answer_ends_with_one_line_when_its_server_shuts_down(
    cli: Cli, config: Config
) -> None:
    own, running = await start_server(config)
    try:
        client = await running.signup("alice")
        assert client.profile is not None
        client.profile.save(cli.profile("alice"))
        async with _running(cli, "answer", "--profile", cli.profile("alice")) as answering:
            await stop_server(own, running)
            line = _one_line(await _ended(answering), EXIT_TRY_LATER)
    finally:
        await stop_server(own, running)
    assert "The server shut down" in line and "(close code 1001)" in line


async def test_a_store_that_is_down_is_a_try_later(
    cli: Cli, config: Config, tmp_path: Path
) -> None:
    valkey = ValkeyProcess(tmp_path / "valkey")
    valkey.start()
    own, running = await start_server(Config(**{**_fields(config), "redis_url": valkey.url}))
    try:
        client = await running.signup("alice")
        assert client.profile is not None
        client.profile.save(cli.profile("alice"))
        valkey.kill()
        line = _one_line(await cli.as_("alice", "whois", "bob"), EXIT_TRY_LATER)
    finally:
        valkey.kill()
        await stop_server(own, running)
    assert "(unavailable)" in line


def _fields(config: Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in Config.__dataclass_fields__}


@asynccontextmanager
async def _impostor(answer: web.Response | None) -> AsyncIterator[str]:
    """An HTTP server that is not Callbook: it answers ``answer`` to everything, or (None)
    accepts connections and never answers."""
    if answer is None:
        hung = asyncio.Event()

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hung.wait()
            writer.close()

        tcp = await asyncio.start_server(hang, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
        finally:
            hung.set()
            tcp.close()
        return

    async def handle(request: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("case", "exit_code", "expected"),
    [
        ("hangs", EXIT_UNREACHABLE, "did not answer in time"),
        ("html_500", EXIT_FAILED, "The server answered HTTP 500. (http_error)"),
        ("html_502", EXIT_TRY_LATER, "The server answered HTTP 502. (http_error)"),
        ("not_json_200", EXIT_FAILED, "answer was not understood"),
        ("bad_url", EXIT_USAGE, "Not a server URL"),
        ("missing_argument", EXIT_USAGE, "required: handle"),
        ("unknown_flag", EXIT_USAGE, "unrecognized arguments: --frobnicate"),
        ("bad_timeout", EXIT_USAGE, "not a number of seconds"),
        ("profile_dir_missing", EXIT_FAILED, "Cannot write a profile in"),
        ("store_unreachable", EXIT_UNREACHABLE, "Cannot reach the store"),
        ("call_refused", EXIT_FAILED, "The call did not connect: unavailable (invalid_handle)"),
    ],
)
async def test_every_command_fails_with_one_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, case: str, exit_code: int, expected: str
) -> None:
    await cli.enroll("alice")
    alice = cli.profile("alice")
    answer = {
        "html_500": web.Response(status=500, text="<h1>oops</h1>", content_type="text/html"),
        "html_502": web.Response(status=502, text="<h1>bad gateway</h1>"),
        "not_json_200": web.Response(text="<html>welcome</html>", content_type="text/html"),
    }.get(case)
    if case == "store_unreachable":
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
        monkeypatch.setenv("CALLBOOK_SECRET", "ab" * 32)
    async with _impostor(answer) as other:
        run: Callable[[], Awaitable[Run]] = {
            "hangs": lambda: cli.run("whois", "bob", "--profile", alice, "--server", other,
                                     "--timeout", "0.5"),
            "html_500": lambda: cli.run("whois", "bob", "--profile", alice, "--server", other),
            "html_502": lambda: cli.run("whois", "bob", "--profile", alice, "--server", other),
            "not_json_200": lambda: cli.run("signup", "bob", "--profile", cli.profile("b"),
                                            "--server", other),
            "bad_url": lambda: cli.run("whois", "bob", "--profile", alice, "--server", "http://"),
            "missing_argument": lambda: cli.run("whois", "--profile", alice),
            "unknown_flag": lambda: cli.run("token", "--profile", alice, "--frobnicate"),
            "bad_timeout": lambda: cli.run("token", "--profile", alice, "--timeout", "soon"),
            "profile_dir_missing": lambda: cli.run(
                "signup", "bob", "--profile", cli.home / "no" / "b.json", "--server",
                cli.server.url),
            "store_unreachable": lambda: cli.run("operator", "list"),
            "call_refused": lambda: cli.run("call", "no way!", "--profile", alice),
        }[case]  # fmt: skip
        line = _one_line(await run(), exit_code)
    assert expected in line, line
    assert not cli.profile("b").exists() and not (cli.home / "no").exists()
