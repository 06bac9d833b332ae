"""The ``callbook`` command: run a server, or act as a client device from a profile file.

The client commands are the SDK's (``signaling.sdk.cli``); this adds the ones that need the
server: ``serve``, ``media`` and ``operator`` (which talks to the store directly).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace
from pathlib import Path

from redis.exceptions import ConnectionError as StoreUnreachable
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as StoreTimeout

from directory.errors import DirectoryError
from media.embedded import EmbeddedMediaError
from signaling.config import ConfigError, from_env
from signaling.logs import configure
from signaling.sdk import cli as client_cli
from signaling.sdk import cli_failures
from signaling.sdk.cli_failures import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    CliError,
    Failure,
    UsageError,
    one_line,
)


def describe(exc: BaseException) -> Failure:
    """The client's mapping (``signaling.sdk.cli_failures``) plus the server's own failures."""
    if isinstance(exc, ConfigError):
        return Failure(EXIT_FAILED, str(exc))
    if isinstance(exc, EmbeddedMediaError):
        return Failure(EXIT_FAILED, f"The embedded SFU did not start: {one_line(exc)}")
    if isinstance(exc, StoreTimeout):
        return Failure(EXIT_UNREACHABLE, "The server did not answer in time.")
    if isinstance(exc, StoreUnreachable):
        return Failure(EXIT_UNREACHABLE, f"Cannot reach the store: {one_line(exc)}")
    if isinstance(exc, RedisError):
        return Failure(EXIT_FAILED, f"The store refused: {one_line(exc)}")
    return cli_failures.describe(exc)


async def cmd_operator(args: argparse.Namespace) -> None:
    """Talks to the store directly, next to the server: REDIS_URL, or the embedded store of
    --data-dir (the running server's, or started just for this command when none runs)."""
    from directory import operators
    from directory.storage.connection import connect
    from directory.storage.embedded import EmbeddedValkey
    from directory.store import Store

    config = from_env()
    data_dir = Path(args.data_dir) if args.data_dir else config.data_dir
    embedded: EmbeddedValkey | None = None
    url = config.redis_url
    if url is None:
        sock = data_dir.resolve() / "valkey.sock"
        if sock.exists() and await _answers(f"unix://{sock}"):
            url = f"unix://{sock}"
        else:
            embedded = EmbeddedValkey(data_dir)
            if _store_running(embedded.pid_file):
                # Starting our own would stop the server's (it listens on TCP: a long path).
                raise CliError(f"A store runs on {data_dir} but not on its socket; set REDIS_URL.")
            url = await asyncio.to_thread(embedded.start)
    redis = connect(url, cluster=config.redis_cluster and url == config.redis_url)
    store = Store(redis, config.directory)
    try:
        if args.action == "create":
            token = await operators.create(store, _need_name(args))
            print(f"Operator {args.name} created. Token (shown once, keep it secret):")
            print(token)
        elif args.action == "revoke":
            await operators.revoke(store, _need_name(args))
            print(f"Revoked every token of operator {args.name}.")
        else:
            client_cli.print_json(await operators.list_all(store))
    except DirectoryError as exc:
        raise CliError(exc.detail) from exc
    finally:
        await redis.aclose()
        if embedded is not None:
            embedded.stop()


def _store_running(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


async def _answers(url: str) -> bool:
    from directory.storage.connection import connect

    redis = connect(url)
    try:
        return bool(await redis.ping())
    except (OSError, RedisError):
        return False
    finally:
        await redis.aclose()


def _need_name(args: argparse.Namespace) -> str:
    if not args.name:
        raise UsageError(f"`callbook operator {args.action}` needs a NAME.")
    name: str = args.name
    return name


def cmd_serve(args: argparse.Namespace) -> None:
    from signaling.server import serve

    config = from_env()
    if args.host:
        config = replace(config, host=args.host)
    if args.port is not None:
        config = replace(config, port=args.port)
    if args.data_dir:
        config = replace(config, data_dir=Path(args.data_dir))
    serve(config)


def _parser() -> argparse.ArgumentParser:
    parser, sub = client_cli.parser(
        "Run a Callbook server, or act as a device from a profile file. Every failure exits "
        "non-zero with one line on stderr; results go to stdout (JSON where useful)."
    )
    serve = sub.add_parser("serve", help="run the server (embedded store unless REDIS_URL)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--data-dir", help="embedded store directory (default ./callbook-data)")
    serve.set_defaults(func=cmd_serve, sync=True)
    media = sub.add_parser(
        "media",
        help="run a media node (SFU); `callbook media --help` lists its flags",
        add_help=False,
    )
    media.add_argument("flags", nargs=argparse.REMAINDER, help="see `callbook media --help`")
    operator = sub.add_parser(
        "operator", help="create, revoke or list operator tokens (talks to the store directly)"
    )
    operator.add_argument("action", choices=("create", "revoke", "list"))
    operator.add_argument("name", nargs="?", help="the operator's name")
    operator.add_argument(
        "--data-dir", help="the server's embedded store directory (default ./callbook-data)"
    )
    operator.set_defaults(func=cmd_operator, sync=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["media"]:
        # The media node owns its flags; argparse would claim the ones it shares with ours.
        from media import workers
        from media.server import main as media_main

        # The server's redacted JSON lines (media.server's own logging set-up then leaves the
        # configured root logger alone): an SFU sees every participant's address. Its worker
        # processes (media/workers.py) start through here too, for the same lines.
        configure(logging.INFO)
        workers.launcher = (sys.executable, "-m", "signaling.cli", "media-worker")
        return media_main(argv[1:])
    if argv[:1] == ["media-worker"]:
        from media.worker import main as worker_main

        configure(logging.INFO)
        return worker_main()
    return client_cli.run(_parser(), argv, describe)


if __name__ == "__main__":
    sys.exit(main())
