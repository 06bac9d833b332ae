"""The ``callbook`` command as a client device, from a profile file: sign up, contacts, calls.

Every failure exits non-zero with one line on stderr; results go to stdout (JSON where useful).
The server's own commands (``serve``, ``media``, ``operator``) join these in ``signaling.cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import msgspec

from signaling.protocol import handles
from signaling.protocol.bodies import AccountUpdate
from signaling.protocol.records import AUDIENCES, RELAY_CHOICES, Block, Contact
from signaling.sdk.cli_failures import CliError, Failure, UsageError, describe
from signaling.sdk.client import Client, Profile

if TYPE_CHECKING:
    from signaling.sdk.softphone import Summary

AUDIENCE_CHOICES = AUDIENCES
#: What ``callbook --help`` says first.
DESCRIPTION = (
    "Act as a Callbook device from a profile file: sign up, contacts, calls. Every failure exits "
    "non-zero with one line on stderr; results go to stdout (JSON where useful)."
)


def print_json(value: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(value)).decode())


def _load_profile(path: Path) -> Profile:
    try:
        return Profile.load(path)
    except FileNotFoundError as exc:
        raise CliError(f"No profile at {path}; create one with `callbook signup`.") from exc
    except (msgspec.DecodeError, OSError) as exc:
        raise CliError(f"The profile {path} is unreadable: {exc}") from exc


def _client(args: argparse.Namespace) -> Client:
    profile = _load_profile(args.profile)
    path: Path = args.profile
    # Signing in adds a media key to a profile from before end-to-end encrypted calls.
    return Client(
        args.server or profile.server,
        profile,
        on_profile_change=lambda p: p.save(path),
        timeout_s=args.timeout,
    )


def _check_new_profile(path: Path) -> None:
    """Before enrolling: a device key the server accepted but that cannot be saved is lost."""
    if path.exists():
        raise CliError(f"{path} already exists; it holds a device key. Pick another file.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise CliError(f"Cannot write a profile in {path.parent}.")


async def cmd_signup(args: argparse.Namespace) -> None:
    if not args.server:
        raise CliError("`callbook signup` needs --server URL (the Callbook server to join).")
    _check_new_profile(args.profile)
    async with Client(args.server, timeout_s=args.timeout) as client:
        done, profile = await client.signup(args.handle, args.display_name, args.device_name)
    profile.save(args.profile)
    print(f"Signed up as {done.account.handle}. Profile written to {args.profile}.")
    print(f"Recovery code (shown once, keep it safe): {done.recovery_code}")


async def cmd_recover(args: argparse.Namespace) -> None:
    if not args.server:
        raise CliError("`callbook recover` needs --server URL.")
    _check_new_profile(args.profile)
    code = args.code or (await asyncio.to_thread(sys.stdin.readline)).strip()
    if not code:
        raise CliError("Give the recovery code with --code or on standard input.")
    async with Client(args.server, timeout_s=args.timeout) as client:
        done, profile = await client.recover(
            args.handle, code, device_name=args.device_name, revoke_others=args.revoke_others
        )
    profile.save(args.profile)
    print(f"This device is now enrolled as {done.account.handle}. Profile: {args.profile}.")
    print(f"New recovery code (the old one is spent; shown once): {done.recovery_code}")


async def cmd_whois(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        print_json(await client.whois(args.handle))


async def cmd_token(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        print((await client.sign_in()).access_token)


async def cmd_contacts(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        if args.action == "list":
            print_json(await client.contacts())
        elif args.action == "add":
            print_json(await client.add_contact(_need_handle(args), args.nickname))
        else:
            target = _need_handle(args)
            contact = _find_entry(await client.contacts(), target, "in your contacts")
            await client.remove_contact(contact.account_id)
            print(f"Removed {target} from your contacts.")


E = TypeVar("E", Contact, Block)


def _find_entry(entries: list[E], target: str, where: str) -> E:
    """An entry by handle, or by account id (entries whose handle you may not see show none)."""
    canonical = handles.normalize(target)
    for entry in entries:
        if entry.account_id == target or (entry.handle and entry.handle == canonical):
            return entry
    raise CliError(f"{target} is not {where}.")


def _need_handle(args: argparse.Namespace) -> str:
    if not args.handle:
        raise UsageError(f"`callbook contacts {args.action}` needs a HANDLE.")
    handle: str = args.handle
    return handle


async def cmd_block(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        block = await client.block(args.handle)
        print(f"Blocked {block.handle or block.account_id}.")


async def cmd_unblock(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        block = _find_entry(await client.blocks(), args.handle, "blocked")
        await client.unblock(block.account_id)
        print(f"Unblocked {args.handle}.")


async def cmd_settings(args: argparse.Namespace) -> None:
    update = AccountUpdate()
    if args.who_can_call:
        update.who_can_call = args.who_can_call
    if args.discoverable:
        update.discoverable = args.discoverable
    if args.display_name is not None:
        update.display_name = args.display_name or None
    if args.handle:
        update.handle = args.handle
    if args.hide_ip is not None:
        update.hide_ip = args.hide_ip == "on"
    if args.relay_calls:
        update.relay_calls = args.relay_calls
    changed = any(getattr(update, f) is not msgspec.UNSET for f in AccountUpdate.__struct_fields__)
    async with _client(args) as client:
        assert client.profile is not None
        profile = client.profile
        account = await client.update(update) if changed else await client.me()
    if account.handle != profile.handle:
        msgspec.structs.replace(profile, handle=account.handle).save(args.profile)
    print_json(account)


async def cmd_export(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        print_json(await client.export())


async def cmd_erase(args: argparse.Namespace) -> None:
    profile = _load_profile(args.profile)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("Refusing to erase without confirmation; pass --yes.")
        prompt = f"Erase {profile.handle} and everything about it? Type the handle: "
        answer = await asyncio.to_thread(input, prompt)
        if answer.strip() != profile.handle:
            raise CliError("Not confirmed; nothing was erased.")
    async with _client(args) as client:
        await client.erase()
    print(f"Erased {profile.handle}. Its handle is quarantined; {args.profile} is now useless.")


def _emitter(args: argparse.Namespace) -> Callable[[dict[str, Any]], None]:
    def emit(event: dict[str, Any]) -> None:
        if args.json:
            print(msgspec.json.encode(event).decode(), flush=True)
        elif event["event"] != "summary":
            details = " ".join(
                f"{k}={v}" for k, v in event.items() if k != "event" and v is not None
            )
            print(f"{event['event']} {details}".rstrip(), flush=True)

    return emit


def _finish(args: argparse.Namespace, summary: Summary) -> None:
    emit = _emitter(args)
    event = summary.as_event()
    if args.json:
        emit(event)
    else:
        media = event["media"]
        print(
            f"{summary.outcome}: {media['audio_packets_received']} audio packets, "
            f"{media['video_frames_received']} video frames received"
        )
    if summary.outcome != "connected":
        why = f" ({summary.reason})" if summary.reason not in (None, summary.outcome) else ""
        raise CliError(f"The call did not connect: {summary.outcome}{why}.")
    if not summary.media_both_ways:
        raise CliError("The call connected but media did not flow both ways.")


async def cmd_call(args: argparse.Namespace) -> None:
    from signaling.sdk.softphone import Softphone  # aiortc loads only for calls

    phone = Softphone(
        _client(args), video=args.video, emit=_emitter(args), bundle=not args.no_bundle
    )
    try:
        summary = await phone.call(args.handle, args.duration)
    finally:
        await phone.close()
        await phone.client.close()
    _finish(args, summary)


async def cmd_answer(args: argparse.Namespace) -> None:
    from signaling.sdk.softphone import Softphone

    phone = Softphone(
        _client(args), video=args.video, emit=_emitter(args), bundle=not args.no_bundle
    )
    try:
        while True:
            summary = await phone.answer(args.duration)
            if args.once:
                break
            _emitter(args)(summary.as_event())
    finally:
        await phone.close()
        await phone.client.close()
    _finish(args, summary)


async def cmd_group(args: argparse.Namespace) -> None:
    from signaling.sdk.softphone import Softphone

    phone = Softphone(
        _client(args), video=args.video, emit=_emitter(args), bundle=not args.no_bundle
    )
    try:
        summary = await phone.group(args.handles, args.duration)
    finally:
        await phone.close()
        await phone.client.close()
    _finish(args, summary)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are an error like any other: one line, exit 64 (not argparse's usage + 2,
    which would read as "unreachable")."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parser(
    description: str | None = None,
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[_Parser]]:
    """The client commands, and the subparsers to which a server adds its own."""
    parser = _Parser(prog="callbook", description=description or DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    add_client_commands(sub)
    return parser, sub


def add_client_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    def client_cmd(
        name: str, func: Callable[[argparse.Namespace], Awaitable[None]], help_: str
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_)
        cmd.add_argument("--profile", type=Path, required=True, help="this device's profile file")
        cmd.add_argument("--server", help="server URL (default: the one in the profile)")
        cmd.add_argument(
            "--timeout", type=_seconds, default=30.0, help="seconds to wait for each answer"
        )
        cmd.set_defaults(func=func, sync=False)
        return cmd

    signup = client_cmd("signup", cmd_signup, "create an account and this device's keys")
    signup.add_argument("handle")
    signup.add_argument("--display-name")
    signup.add_argument("--device-name", default="cli")
    recover = client_cmd("recover", cmd_recover, "enroll this device with a recovery code")
    recover.add_argument("handle")
    recover.add_argument("--code", help="the recovery code (default: read from standard input)")
    recover.add_argument("--device-name", default="cli")
    recover.add_argument("--revoke-others", action="store_true", help="revoke every other device")
    client_cmd("whois", cmd_whois, "show a person's public card").add_argument("handle")
    client_cmd("token", cmd_token, "print a fresh access token")
    contacts = client_cmd("contacts", cmd_contacts, "list, add or remove contacts")
    contacts.add_argument("action", choices=("list", "add", "remove"))
    contacts.add_argument("handle", nargs="?", help="a handle (or, to remove, an account id)")
    contacts.add_argument("--nickname")
    client_cmd("block", cmd_block, "block a handle").add_argument("handle")
    client_cmd("unblock", cmd_unblock, "unblock a handle or account id").add_argument("handle")
    settings = client_cmd("settings", cmd_settings, "show or change your account settings")
    settings.add_argument("--who-can-call", choices=AUDIENCE_CHOICES)
    settings.add_argument("--discoverable", choices=AUDIENCE_CHOICES)
    settings.add_argument("--display-name", help="empty string clears it")
    settings.add_argument("--handle", help="change your handle (the old one is quarantined)")
    settings.add_argument(
        "--relay-calls", choices=RELAY_CHOICES,
        help="which calls go through a relay so the peer never sees your IP: strangers "
        "(people not in your contacts; the default), always, or never (for your side)",
    )  # fmt: skip
    settings.add_argument(
        "--hide-ip", choices=("on", "off"), help="on: --relay-calls always; off: strangers"
    )
    call = client_cmd(
        "call", cmd_call, "call a handle with synthetic media; exit 0 if media flowed"
    )
    call.add_argument("handle")
    call.add_argument("--video", action="store_true", help="send and expect video too")
    call.add_argument(
        "--duration", type=float, default=5.0,
        help="seconds to stay in the call once media connects (1:1) or from joining (group)",
    )  # fmt: skip
    call.add_argument("--json", action="store_true", help="JSON lines, each with an event field")
    call.add_argument(
        "--no-bundle",
        action="store_true",
        help="through the SFU, the old mode: a connection per publisher (protocol 11.15.2)",
    )
    group = client_cmd(
        "group", cmd_group, "start a group call with synthetic media; exit 0 if media flowed"
    )
    group.add_argument("handles", nargs="+", metavar="HANDLE")
    group.add_argument("--video", action="store_true", help="send and expect video too")
    group.add_argument("--duration", type=float, default=10.0, help="seconds to stay in the call")
    group.add_argument("--json", action="store_true", help="JSON lines, each with an event field")
    group.add_argument(
        "--no-bundle",
        action="store_true",
        help="through the SFU, the old mode: a connection per publisher (protocol 11.15.2)",
    )
    answer = client_cmd(
        "answer", cmd_answer, "answer incoming calls (1:1 or group) with synthetic media"
    )
    answer.add_argument("--once", action="store_true", help="exit after the first call")
    answer.add_argument("--video", action="store_true", help="send video too")
    answer.add_argument(
        "--duration",
        type=float,
        default=None,
        help="hang up after S seconds (default: caller ends)",
    )
    answer.add_argument("--json", action="store_true", help="JSON lines, each with an event field")
    answer.add_argument(
        "--no-bundle",
        action="store_true",
        help="through the SFU, the old mode: a connection per publisher (protocol 11.15.2)",
    )
    client_cmd("export", cmd_export, "print everything the server stores about you")
    erase = client_cmd("erase", cmd_erase, "erase your account")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds (0 to 3600)")
    return value


def main(argv: list[str] | None = None) -> int:
    """``callbook`` with the client commands only (the SDK's own entry point)."""
    return run(parser()[0], sys.argv[1:] if argv is None else argv, describe)


def run(
    parser: argparse.ArgumentParser, argv: list[str], explain: Callable[[BaseException], Failure]
) -> int:
    """Parse and run one command; every failure becomes one line on stderr (``explain``)."""
    try:
        args = parser.parse_args(argv)
        if args.sync:
            args.func(args)
        else:
            asyncio.run(args.func(args))
    except Exception as exc:  # every failure becomes one line (cli_failures)
        return _fail(exc, explain)
    except KeyboardInterrupt as exc:
        return _fail(exc, explain)
    return 0


def _fail(exc: BaseException, explain: Callable[[BaseException], Failure]) -> int:
    failure = explain(exc)
    print(f"callbook: {failure.line}", file=sys.stderr)
    return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
