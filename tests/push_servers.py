"""Local stand-ins for APNs and FCM that a test can reach: real HTTP/2 over TLS on 127.0.0.1.

``ProviderServer`` speaks HTTP/2 only (ALPN ``h2``, as APNs requires) with a self-signed
certificate made per test; it records every request and answers from a script the test sets
(per path), then with the default answer. The checks of what Apple and Google document are in
the tests, on the recorded requests.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _released() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class ProviderServer:
    default: Callable[[Received], Answer]
    received: list[Received] = field(default_factory=list)
    #: Answers to give, in order, per path prefix, before the default one.
    script: dict[str, list[Answer]] = field(default_factory=dict)
    url: str = ""
    _arrivals: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    #: Cleared: requests are recorded but answered only once it is set again.
    hold: asyncio.Event = field(default_factory=lambda: _released())
    _server: asyncio.Server | None = None
    _open: set[asyncio.Transport] = field(default_factory=set)

    async def start(self, cert_file: Path, key_file: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["h2"])
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), "127.0.0.1", 0, ssl=context
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"https://127.0.0.1:{port}"

    async def next(self, timeout_s: float = 10.0) -> Received:
        """The next request that arrives (or arrived), in order."""
        return await asyncio.wait_for(self._arrivals.get(), timeout_s)

    def answer(self, request: Received) -> Answer:
        self.received.append(request)
        self._arrivals.put_nowait(request)
        for prefix, answers in self.script.items():
            if request.path.startswith(prefix) and answers:
                return answers.pop(0)
        return self.default(request)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in self._open:
                transport.close()
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    def __init__(self, server: ProviderServer) -> None:
        self._server = server
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._streams: dict[int, Received] = {}
        self._transport: asyncio.Transport | None = None
        self._held: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._open.add(transport)
        self._h2.initiate_connection()
        transport.write(self._h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        assert self._transport is not None
        self._server._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        for event in self._h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {str(k): str(v) for k, v in event.headers or []}
                self._streams[event.stream_id] = Received(
                    headers[":method"], headers[":path"], headers
                )
            elif isinstance(event, h2.events.DataReceived):
                self._streams[event.stream_id].body += event.data or b""
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._respond(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._transport.close()
        self._transport.write(self._h2.data_to_send())

    def _respond(self, stream_id: int) -> None:
        answer = self._server.answer(self._streams.pop(stream_id))
        if self._server.hold.is_set():
            self._send(stream_id, answer)
        else:
            task = asyncio.ensure_future(self._send_when_released(stream_id, answer))
            self._held.add(task)
            task.add_done_callback(self._held.discard)

    async def _send_when_released(self, stream_id: int, answer: Answer) -> None:
        await self._server.hold.wait()
        assert self._transport is not None
        if not self._transport.is_closing():
            self._send(stream_id, answer)
            self._transport.write(self._h2.data_to_send())

    def _send(self, stream_id: int, answer: Answer) -> None:
        headers = [(":status", str(answer.status)), ("content-length", str(len(answer.body)))]
        self._h2.send_headers(stream_id, [*headers, *answer.headers])
        self._h2.send_data(stream_id, answer.body, end_stream=True)
