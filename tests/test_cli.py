"""The ``callbook`` command as a person runs it: real processes against a real server.

Each command runs as ``python -m signaling.cli`` in a subprocess, started with asyncio so the
server, which runs in this test's event loop, keeps answering while the command waits on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pty
import re
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.sdk.client import Client, ClientError, Profile
from tests.conftest import Server

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:1"
RECOVERY_LINE = re.compile(r"^Recovery code \(shown once, keep it safe\): (\S+)$", re.M)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def ok(self) -> str:
        assert (self.code, self.err) == (0, ""), self
        return self.out

    def json(self) -> Any:
        return json.loads(self.ok())

    def failed(self, code: int = 1) -> str:
        """Assert the documented failure shape: exit ``code``, one stderr line, no stdout."""
        assert self.code == code, self
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("callbook: "), self.err
        assert self.out == "", self.out
        return lines[0]


class Cli:
    """Runs ``callbook`` against one test server, with profiles in a temporary directory."""

    def __init__(self, server: Server, home: Path) -> None:
        self.server = server
        self.home = home
        self.clients: list[Client] = []

    def profile(self, name: str) -> Path:
        return self.home / f"{name}.json"

    async def run(self, *args: str | Path, stdin: int = asyncio.subprocess.DEVNULL) -> Run:
        # The code under test is this checkout's, whatever is installed.
        path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "signaling.cli",
            *map(str, args),
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.home,
            env=env,
            umask=0,  # the profile must be private whatever the umask
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return Run(process.returncode, out.decode(), err.decode())

    async def signup(self, handle: str, *extra: str) -> Run:
        return await self.run(
            "signup", handle, "--profile", self.profile(handle), "--server", self.server.url,
            *extra,
        )  # fmt: skip

    async def as_(self, who: str, command: str, *args: str) -> Run:
        """Run ``command`` with ``who``'s profile (the server comes from the profile)."""
        return await self.run(command, *args, "--profile", self.profile(who))

    def api(self, who: str) -> Client:
        """An in-process client with ``who``'s profile, to check what a command did."""
        client = Client(self.server.url, Profile.load(self.profile(who)))
        self.clients.append(client)
        return client

    async def enroll(self, handle: str, display_name: str | None = None) -> Profile:
        """Sign up in-process (quicker) and write the profile where the CLI will look."""
        client = await self.server.signup(handle, display_name)
        assert client.profile is not None
        client.profile.save(self.profile(handle))
        return client.profile


@pytest.fixture
async def cli(server: Server, tmp_path: Path) -> AsyncIterator[Cli]:
    runner = Cli(server, tmp_path)
    yield runner
    for client in runner.clients:
        await client.close()


def _jwt_part(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# -- Sign-up and the profile -------------------------------------------------------------------


async def test_signup_writes_a_private_profile_and_prints_the_recovery_code(cli: Cli) -> None:
    out = (await cli.signup("Alice", "--display-name", "Alice A.")).ok()

    assert out.splitlines()[0] == f"Signed up as alice. Profile written to {cli.profile('Alice')}."
    match = RECOVERY_LINE.search(out)
    assert match, out
    path = cli.profile("Alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    profile = Profile.load(path)
    assert profile.server == cli.server.url
    assert profile.handle == "alice"
    assert profile.recovery_code == match[1]
    assert re.fullmatch(r"[0-9a-f]{32}", profile.account_id)
    assert re.fullmatch(r"[0-9a-f]{32}", profile.device_id)

    # The profile is a working device: its key signs in and the account is the one created.
    me = await cli.api("Alice").me()
    assert (me.id, me.handle, me.display_name) == (profile.account_id, "alice", "Alice A.")


async def test_the_printed_recovery_code_enrolls_a_new_device_once(cli: Cli) -> None:
    code = RECOVERY_LINE.search((await cli.signup("alice")).ok())
    assert code
    phone = cli.profile("phone")

    out = (await cli.run("recover", "alice", "--code", code[1], "--profile", phone,
                         "--server", cli.server.url)).ok()  # fmt: skip
    assert "enrolled as alice" in out
    assert stat.S_IMODE(phone.stat().st_mode) == 0o600
    assert Profile.load(phone).account_id == Profile.load(cli.profile("alice")).account_id
    assert (await cli.api("phone").me()).handle == "alice"

    # The code is spent: a second use fails, and writes no profile.
    again = await cli.run("recover", "alice", "--code", code[1], "--profile",
                          cli.profile("tablet"), "--server", cli.server.url)  # fmt: skip
    assert "(bad_recovery_code)" in again.failed()
    assert not cli.profile("tablet").exists()


async def test_signup_refuses_to_overwrite_an_existing_profile(cli: Cli) -> None:
    path = cli.profile("bob")
    path.write_text("precious device key\n")

    line = (await cli.signup("bob")).failed()

    assert str(path) in line
    assert path.read_text() == "precious device key\n"
    # Nothing was registered: the handle is still free.
    await cli.server.signup("bob")


# -- Reading and changing things ---------------------------------------------------------------


async def test_whois_prints_the_json_card(cli: Cli) -> None:
    alice = await cli.enroll("alice", "Alice")
    await cli.enroll("bob")

    card = (await cli.as_("bob", "whois", "ALICE")).json()

    assert card == {"account_id": alice.account_id, "handle": "alice", "display_name": "Alice"}


async def test_token_prints_a_jwt_for_this_device(cli: Cli) -> None:
    alice = await cli.enroll("alice")

    out = (await cli.as_("alice", "token")).ok()

    assert out.endswith("\n") and out.count("\n") == 1
    token = out.strip()
    header, claims, signature = token.split(".")
    assert _jwt_part(header)["alg"] == "EdDSA"
    assert _jwt_part(claims)["sub"] == alice.account_id
    assert _jwt_part(claims)["did"] == alice.device_id
    assert signature
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{cli.server.url}/v1/me", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200
        assert (await r.json())["handle"] == "alice"


async def test_contacts_add_list_remove(cli: Cli) -> None:
    await cli.enroll("alice")
    bob = await cli.enroll("bob", "Bob")

    added = (await cli.as_("alice", "contacts", "add", "Bob", "--nickname", "Bobby")).json()
    assert (added["account_id"], added["handle"], added["nickname"]) == (
        bob.account_id,
        "bob",
        "Bobby",
    )
    listed = (await cli.as_("alice", "contacts", "list")).json()
    assert [(c["handle"], c["display_name"], c["nickname"]) for c in listed] == [
        ("bob", "Bob", "Bobby")
    ]

    # Removal takes the handle however it is typed: NFKC + casefold, like the server.
    out = (await cli.as_("alice", "contacts", "remove", "ＢＯＢ")).ok()
    assert out.startswith("Removed ")
    assert (await cli.as_("alice", "contacts", "list")).json() == []

    assert "not in your contacts" in (await cli.as_("alice", "contacts", "remove", "bob")).failed()
    assert "needs a HANDLE" in (await cli.as_("alice", "contacts", "add")).failed(64)


async def test_block_hides_you_and_unblock_undoes_it(cli: Cli) -> None:
    await cli.enroll("alice")
    await cli.enroll("bob")

    assert (await cli.as_("bob", "block", "alice")).ok() == "Blocked alice.\n"
    with pytest.raises(ClientError) as hidden:
        await cli.api("alice").whois("bob")
    assert hidden.value.code == "not_found"

    assert (await cli.as_("bob", "unblock", "Alice")).ok() == "Unblocked Alice.\n"
    assert (await cli.api("alice").whois("bob")).handle == "bob"
    assert "not blocked" in (await cli.as_("bob", "unblock", "alice")).failed()


async def test_settings_discoverable_nobody_hides_you_from_whois(cli: Cli) -> None:
    await cli.enroll("alice")
    await cli.enroll("bob")
    assert (await cli.api("bob").whois("alice")).handle == "alice"

    account = (await cli.as_("alice", "settings", "--discoverable", "nobody")).json()
    assert account["discoverable"] == "nobody"

    line = (await cli.as_("bob", "whois", "alice")).failed(1)
    assert "(not_found)" in line
    # Settings without a flag shows them, unchanged.
    assert (await cli.as_("alice", "settings")).json()["discoverable"] == "nobody"


async def test_settings_relay_calls_and_the_older_hide_ip(cli: Cli) -> None:
    await cli.enroll("alice")
    assert (await cli.as_("alice", "settings")).json()["relay_calls"] == "strangers"
    account = (await cli.as_("alice", "settings", "--relay-calls", "never")).json()
    assert (account["relay_calls"], account["hide_ip"]) == ("never", False)
    account = (await cli.as_("alice", "settings", "--hide-ip", "on")).json()
    assert (account["relay_calls"], account["hide_ip"]) == ("always", True)


async def test_settings_handle_change_updates_the_profile(cli: Cli) -> None:
    alice = await cli.enroll("alice")

    account = (await cli.as_("alice", "settings", "--handle", "Alicia")).json()

    assert (account["id"], account["handle"]) == (alice.account_id, "alicia")
    assert Profile.load(cli.profile("alice")).handle == "alicia"
    assert stat.S_IMODE(cli.profile("alice").stat().st_mode) == 0o600


async def test_export_prints_everything_about_you(cli: Cli) -> None:
    alice = await cli.enroll("alice")
    await cli.enroll("bob")
    await cli.enroll("carol")
    await cli.api("alice").add_contact("bob", "B")
    await cli.api("alice").block("carol")

    document = (await cli.as_("alice", "export")).json()

    assert document["account"]["id"] == alice.account_id
    assert [(c["handle"], c["nickname"]) for c in document["contacts"]] == [("bob", "B")]
    assert [b["handle"] for b in document["blocks"]] == ["carol"]
    assert [d["id"] for d in document["devices"]] == [alice.device_id]
    assert "recovery_code" in document


# -- Erasing -----------------------------------------------------------------------------------


async def test_erase_without_yes_and_without_a_terminal_refuses(cli: Cli) -> None:
    await cli.enroll("alice")
    await cli.enroll("bob")

    line = (await cli.as_("alice", "erase")).failed()

    assert "--yes" in line
    assert (await cli.api("bob").whois("alice")).handle == "alice"
    assert (await cli.api("alice").me()).handle == "alice"


async def test_erase_on_a_terminal_asks_for_the_handle(cli: Cli) -> None:
    await cli.enroll("alice")
    await cli.enroll("bob")

    async def erase_answering(answer: str) -> Run:
        primary, secondary = pty.openpty()
        try:
            os.write(primary, answer.encode() + b"\n")
            return await cli.run("erase", "--profile", cli.profile("alice"), stdin=secondary)
        finally:
            os.close(secondary)
            os.close(primary)

    wrong = await erase_answering("bob")
    assert wrong.code == 1
    assert "Type the handle" in wrong.out
    [line] = wrong.err.splitlines()
    assert "nothing was erased" in line
    assert (await cli.api("bob").whois("alice")).handle == "alice"

    right = await erase_answering("alice")
    assert right.code == 0, right
    assert "Erased alice" in right.out
    with pytest.raises(ClientError) as gone:
        await cli.api("bob").whois("alice")
    assert gone.value.code == "not_found"


async def test_erase_with_yes_erases_and_quarantines_the_handle(cli: Cli) -> None:
    await cli.enroll("alice")
    await cli.enroll("bob")

    out = (await cli.as_("alice", "erase", "--yes")).ok()

    assert out.startswith("Erased alice.")
    with pytest.raises(ClientError) as gone:
        await cli.api("bob").whois("alice")
    assert gone.value.code == "not_found"
    # The old profile's device is gone with the account.
    (await cli.as_("alice", "token")).failed()
    # Nobody can take the handle during quarantine, not even its former owner.
    again = await cli.run("signup", "alice", "--profile", cli.profile("alice_again"),
                          "--server", cli.server.url)  # fmt: skip
    assert "(handle_taken)" in again.failed()
    assert not cli.profile("alice_again").exists()


# -- Failures: non-zero, one line on stderr ----------------------------------------------------


@pytest.mark.parametrize(
    ("case", "exit_code", "expected"),
    [
        ("handle_taken", 1, "(handle_taken)"),
        ("handle_reserved", 1, "(handle_reserved)"),
        ("invalid_handle", 1, "(invalid_handle)"),
        ("not_found", 1, "(not_found)"),
        ("unreachable_whois", 2, "(unreachable)"),
        ("unreachable_signup", 2, "(unreachable)"),
        ("signup_without_server", 1, "--server"),
        ("missing_profile", 1, "No profile"),
        ("corrupt_profile", 1, "unreadable"),
        ("revoked_device", 1, "(unknown_device)"),
    ],
)
async def test_failures_exit_non_zero_with_one_line(
    cli: Cli, case: str, exit_code: int, expected: str
) -> None:
    await cli.enroll("alice")
    new = cli.profile("new")
    server = cli.server.url
    if case == "revoked_device":
        second = await cli.server.client().recover(
            "alice", Profile.load(cli.profile("alice")).recovery_code or "", revoke_others=True
        )
        assert second[0].account.handle == "alice"
    if case == "corrupt_profile":
        new.write_text("{not json")
    args: list[str | Path] = {
        "handle_taken": ["signup", "ALICE", "--profile", new, "--server", server],
        "handle_reserved": ["signup", "admin", "--profile", new, "--server", server],
        "invalid_handle": ["signup", "a b", "--profile", new, "--server", server],
        "not_found": ["whois", "nobody_here", "--profile", cli.profile("alice")],
        "unreachable_whois": ["whois", "bob", "--profile", cli.profile("alice"),
                              "--server", UNREACHABLE],
        "unreachable_signup": ["signup", "bob", "--profile", new, "--server", UNREACHABLE],
        "signup_without_server": ["signup", "bob", "--profile", new],
        "missing_profile": ["whois", "alice", "--profile", cli.profile("nobody")],
        "corrupt_profile": ["whois", "alice", "--profile", new],
        "revoked_device": ["whois", "alice", "--profile", cli.profile("alice")],
    }[case]  # fmt: skip

    line = (await cli.run(*args)).failed(exit_code)

    assert expected in line
    assert "Traceback" not in line
    if case != "corrupt_profile":
        assert not new.exists(), "a failed command wrote a profile"
