"""The operator capability: separate identity, pseudonymous call views, audited actions,
suspension, abuse reports with statements of reasons, and bounded quality reports."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from directory import operators
from directory.inventory import INVENTORY
from directory.storage import keys
from directory.storage.embedded import EmbeddedValkey
from directory.store import Store
from signaling import cli
from signaling.protocol import messages as m
from signaling.rest import endpoints
from signaling.sdk.client import Client, ClientError
from signaling.sdk.line import Line, LineClosed, LineRefused
from tests.conftest import TEST_SECRET_TEXT, MakeServer, Server
from tests.redis_cluster import BOTH_STORES, StoreTarget

REASON = "Investigating a reported harassment case."


async def _operator(store: Store, name: str = "olga") -> str:
    return await operators.create(store, name)


async def _http(
    server: Server, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body, headers=headers) as response,
    ):
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None


@asynccontextmanager
async def _connected_call(
    caller: Client, callee: Client, handle: str
) -> AsyncIterator[tuple[Line, Line, str]]:
    async with Line(caller) as a, Line(callee) as b:
        await a.open()
        await b.open()
        await a.send(m.Invite(handle=handle))
        call_id = (await a.expect(m.Ringing)).call_id
        await b.expect(m.Incoming)
        await b.send(m.Accept(call_id=call_id))
        await a.expect(m.Accepted)
        await b.expect(m.Accepted)
        yield a, b, call_id


def _quality(call_id: str, rtt: float = 40.0) -> m.Quality:
    return m.Quality(call_id=call_id, rtt_ms=rtt, jitter_ms=2.0, loss=0.0, bitrate_kbps=500.0)


# --- identity ----------------------------------------------------------------------------------


async def test_user_and_operator_tokens_are_separate_audiences(
    server: Server, store: Store
) -> None:
    alice = await server.signup("alice")
    op = await _operator(store)
    status, problem = await _http(server, "GET", "/v1/operator/calls", await alice.token())
    assert (status, problem["code"]) == (403, "not_operator")
    status, problem = await _http(server, "GET", "/v1/me", op)
    assert (status, problem["code"]) == (401, "token_invalid")
    status, problem = await _http(server, "GET", "/v1/operator/calls", None)
    assert (status, problem["code"]) == (401, "token_missing")
    status, _ = await _http(server, "GET", "/v1/operator/calls", op)
    assert status == 200
    # The WebSocket refuses an operator token too.
    line = Line(server.client())
    line.client._token = op
    with pytest.raises(LineRefused, match="token_invalid"):
        await line.open()
    await line.close()
    # Only a digest is stored, and revoking takes effect at once.
    stored = await store.redis.hgetall(keys.operators())
    assert op not in json.dumps(stored) and operators.digest(op) in stored
    await operators.revoke(store, "olga")
    status, problem = await _http(server, "GET", "/v1/operator/calls", op)
    assert (status, problem["code"]) == (401, "token_invalid")


@BOTH_STORES
def test_the_cli_creates_lists_and_revokes_operators(
    store_target: StoreTarget,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", store_target.url)
    monkeypatch.setenv("CALLBOOK_SECRET", TEST_SECRET_TEXT)
    monkeypatch.setenv("CALLBOOK_REDIS_CLUSTER", "1" if store_target.cluster else "0")
    assert cli.main(["operator", "create", "cli_ops"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("cbo_")
    assert cli.main(["operator", "list"]) == 0
    assert '"cli_ops"' in capsys.readouterr().out
    assert cli.main(["operator", "create", "cli_ops"]) == 1  # names are unique
    assert cli.main(["operator", "revoke", "cli_ops"]) == 0
    assert cli.main(["operator", "revoke", "cli_ops"]) == 1
    capsys.readouterr()
    assert cli.main(["operator", "list"]) == 0
    assert "cli_ops" not in capsys.readouterr().out


# --- calls ---------------------------------------------------------------------------------


async def test_call_views_name_participants_only_by_pseudonym(server: Server, store: Store) -> None:
    alice = await server.signup("alice_smith", "Alice Smith")
    bob = await server.signup("bob_jones", "Bob Jones")
    op = await _operator(store)
    async with _connected_call(alice, bob, "bob_jones") as (a, b, call_id):
        await a.send(_quality(call_id))
        await b.send(_quality(call_id, 60.0))
        for _ in range(100):
            status, listing = await _http(server, "GET", "/v1/operator/calls", op)
            if len(listing["calls"][0]["legs"]) == 2:
                break
            await asyncio.sleep(0.02)
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.url + "/v1/operator/calls",
                     headers={"Authorization": f"Bearer {op}"}) as response,
        ):  # fmt: skip
            raw = await response.text()
        status, detail = await _http(server, "GET", f"/v1/operator/calls/{call_id}", op)
    assert status == 200
    (call,) = json.loads(raw)["calls"]
    assert call["id"] == call_id and call["kind"] == "1:1" and call["state"] == "connected"
    assert call["participant_count"] == 2 and len(set(call["participants"])) == 2
    assert {leg["rtt_ms"] for leg in call["legs"]} == {40.0, 60.0}
    assert {leg["participant"] for leg in call["legs"]} == set(call["participants"])
    assert detail["participants"] == call["participants"]
    assert alice.profile is not None and bob.profile is not None
    for secret in (
        "alice_smith", "bob_jones", "Alice Smith", "Bob Jones", "127.0.0.1",
        alice.profile.account_id, bob.profile.account_id,
        alice.profile.device_id, bob.profile.device_id,
    ):  # fmt: skip
        assert secret not in raw
        assert secret not in json.dumps(detail)


async def test_reveal_needs_a_reason_and_is_audited(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    op = await _operator(store)
    async with _connected_call(alice, bob, "bob") as (_a, _b, call_id):
        path = f"/v1/operator/calls/{call_id}/reveal"
        status, problem = await _http(server, "POST", path, op, {})
        assert (status, problem["code"]) == (422, "invalid_request")
        status, problem = await _http(server, "POST", path, op, {"reason": "because"})
        assert (status, problem["code"]) == (422, "invalid_request")
        assert await store.redis.xlen(keys.audit_log()) == 0
        status, revealed = await _http(server, "POST", path, op, {"reason": REASON})
    assert status == 200
    assert {(p["role"], p["handle"]) for p in revealed["participants"]} == {
        ("caller", "alice"), ("callee", "bob"),
    }  # fmt: skip
    status, log = await _http(server, "GET", "/v1/operator/audit", op)
    (entry,) = log["entries"]
    assert (entry["operator"], entry["action"], entry["target"], entry["reason"]) == (
        "olga", "reveal", call_id, REASON,
    )  # fmt: skip
    assert entry["id"] == revealed["audit_id"] == log["next"]
    status, later = await _http(server, "GET", f"/v1/operator/audit?after={log['next']}", op)
    assert later["entries"] == []


async def test_the_audit_log_can_only_be_appended_to(server: Server, store: Store) -> None:
    audit_routes = {(e.method, e.path) for e in endpoints() if "audit" in e.path}
    assert audit_routes == {("GET", "/v1/operator/audit")}
    op = await _operator(store)
    bob = await server.signup("bob")
    assert bob.profile is not None
    account = bob.profile.account_id
    for action in ("suspend", "unsuspend"):
        status, _ = await _http(
            server, "POST", f"/v1/operator/accounts/{account}/{action}", op, {"reason": REASON}
        )
        assert status == 204
    first = await store.redis.xrange(keys.audit_log())
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        status, problem = await _http(server, method, "/v1/operator/audit", op, {})
        assert (status, problem["code"]) == (405, "method_not_allowed")
    await _http(server, "POST", f"/v1/operator/accounts/{account}/suspend", op, {"reason": REASON})
    after = await store.redis.xrange(keys.audit_log())
    assert after[: len(first)] == first and len(after) == len(first) + 1
    assert [e[1]["action"] for e in after] == ["suspend", "unsuspend", "suspend"]


async def test_an_operator_ends_a_call_for_everyone(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    op = await _operator(store)
    async with _connected_call(alice, bob, "bob") as (a, b, call_id):
        path = f"/v1/operator/calls/{call_id}/end"
        status, _ = await _http(server, "POST", path, op, {"reason": REASON})
        assert status == 204
        assert (await a.expect(m.Ended)).reason == "operator"
        assert (await b.expect(m.Ended)).reason == "operator"
        status, _ = await _http(server, "POST", path, op, {"reason": REASON})
        assert status == 404
    status, listing = await _http(server, "GET", "/v1/operator/calls", op)
    assert listing["calls"] == []


async def test_an_operator_disconnects_a_device(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    op = await _operator(store)
    assert alice.profile is not None
    path = f"/v1/operator/devices/{alice.profile.account_id}/{alice.profile.device_id}/disconnect"
    async with Line(alice) as line:
        await line.open()
        status, _ = await _http(server, "POST", path, op, {"reason": REASON})
        assert status == 204
        with pytest.raises(LineClosed) as closed:
            await line.receive(5)
        assert closed.value.code == 4002
        await line.open()  # it may come back
    unknown = f"/v1/operator/devices/{alice.profile.account_id}/{'0' * 32}/disconnect"
    status, problem = await _http(server, "POST", unknown, op, {"reason": REASON})
    assert (status, problem["code"]) == (404, "not_found")


# --- suspension --------------------------------------------------------------------------------


async def test_a_suspended_account_cannot_call_nor_be_found(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    op = await _operator(store)
    assert bob.profile is not None
    with pytest.raises(ClientError) as unknown:
        await alice.whois("nobody_here")
    path = f"/v1/operator/accounts/{bob.profile.account_id}/suspend"
    assert (await _http(server, "POST", path, op, {"reason": REASON}))[0] == 204
    with pytest.raises(ClientError) as hidden:
        await alice.whois("bob")
    assert (hidden.value.status, hidden.value.code, hidden.value.detail) == (
        unknown.value.status, unknown.value.code, unknown.value.detail,
    )  # fmt: skip
    assert (await bob.me()).suspended
    async with Line(bob) as line:
        await line.open()
        await line.send(m.Invite(handle="alice", ref="r"))
        error = await line.expect(m.Error)
        assert (error.code, error.ref) == ("account_suspended", "r")
    notices = (await _http(server, "GET", "/v1/me/notices", await bob.token()))[1]["notices"]
    assert [(n["kind"], n["statement"]) for n in notices] == [("suspension", REASON)]
    path = f"/v1/operator/accounts/{bob.profile.account_id}/unsuspend"
    assert (await _http(server, "POST", path, op, {"reason": REASON}))[0] == 204
    assert (await alice.whois("bob")).handle == "bob"


# --- reports -----------------------------------------------------------------------------------


async def _report(client: Client, handle: str, **extra: Any) -> tuple[int, Any]:
    body = {"handle": handle, "category": "harassment", "text": "Calls me every night."} | extra
    async with (
        aiohttp.ClientSession() as http,
        http.post(client.server + "/v1/reports", json=body,
                  headers={"Authorization": f"Bearer {await client.token()}"}) as response,
    ):  # fmt: skip
        return response.status, await response.json()


async def test_report_flow_with_statements_of_reasons_to_both(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    op = await _operator(store)
    assert bob.profile is not None
    status, matched = await _report(alice, "bob")
    assert status == 202 and matched["status"] == "received"
    status, unmatched = await _report(alice, "nobody_here")
    assert status == 202 and unmatched.keys() == matched.keys()
    assert unmatched["status"] == "received"

    _, queue = await _http(server, "GET", "/v1/operator/reports", op)
    by_id = {r["id"]: r for r in queue["reports"]}
    assert by_id[matched["report"]]["reported"] == bob.profile.account_id
    assert by_id[matched["report"]]["status"] == "received"
    assert by_id[unmatched["report"]]["reported"] is None
    assert by_id[unmatched["report"]]["status"] == "unmatched"

    statement = "Repeated unwanted calls after being asked to stop."
    decide = f"/v1/operator/reports/{matched['report']}/decide"
    status, decided = await _http(
        server, "POST", decide, op, {"decision": "suspend", "statement": statement}
    )
    assert status == 200 and decided["status"] == "decided"
    status, problem = await _http(
        server, "POST", decide, op, {"decision": "dismiss", "statement": statement}
    )
    assert (status, problem["code"]) == (409, "already_decided")
    status, problem = await _http(
        server, "POST", f"/v1/operator/reports/{unmatched['report']}/decide", op,
        {"decision": "warn", "statement": statement},
    )  # fmt: skip
    assert (status, problem["code"]) == (422, "invalid_value")

    for client, role in ((alice, "reporter"), (bob, "reported")):
        notices = (await _http(server, "GET", "/v1/me/notices", await client.token()))[1]
        (notice,) = notices["notices"]
        assert (notice["role"], notice["decision"], notice["statement"]) == (
            role, "suspend", statement,
        )  # fmt: skip
    assert (await bob.me()).suspended
    exported = await alice.export()
    assert {r.id for r in exported.reports_filed} == {matched["report"], unmatched["report"]}
    assert {r.status for r in exported.reports_filed} == {"decided", "received"}
    assert [n.role for n in exported.notices] == ["reporter"]
    _, log = await _http(server, "GET", "/v1/operator/audit", op)
    assert [e["action"] for e in log["entries"]] == ["decide_report", "suspend"]
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        metrics = await response.text()
    assert 'callbook_abuse_reports_received_total{category="harassment"} 2.0' in metrics
    assert 'callbook_operator_actions_total{action="decide_report"} 1.0' in metrics


async def test_ban_handle_keeps_the_handle_from_ever_coming_back(
    server: Server, store: Store
) -> None:
    alice = await server.signup("alice")
    mallory = await server.signup("mallory")
    op = await _operator(store)
    _, receipt = await _report(alice, "mallory", category="impersonation")
    status, _ = await _http(
        server, "POST", f"/v1/operator/reports/{receipt['report']}/decide", op,
        {"decision": "ban_handle", "statement": "Impersonates a public figure."},
    )  # fmt: skip
    assert status == 200
    await mallory.erase()
    assert (
        await store.redis.get(keys.handle_key(store.handle_digest("mallory"))) == keys.QUARANTINED
    )
    assert await store.redis.ttl(keys.handle_key(store.handle_digest("mallory"))) == -1
    with pytest.raises(ClientError) as taken:
        await server.signup("mallory")
    assert taken.value.code == "handle_taken"


async def test_erasing_the_reporter_anonymises_its_reports(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    assert alice.profile is not None and bob.profile is not None
    _, receipt = await _report(alice, "bob")
    await alice.erase()
    stored = await store.redis.hgetall(keys.report(receipt["report"]))
    assert stored["reporter"] == "" and stored["reported"] == bob.profile.account_id
    op = await _operator(store)
    _, queue = await _http(server, "GET", "/v1/operator/reports", op)
    (report,) = queue["reports"]
    assert report["reporter"] is None and report["text"] == "Calls me every night."
    async for key in store.redis.scan_iter(count=500):
        if key == keys.report(receipt["report"]):
            continue
        value = json.dumps(await _dump(store, key))
        assert alice.profile.account_id not in key and alice.profile.account_id not in value


async def _dump(store: Store, key: str) -> Any:
    kind = await store.redis.type(key)
    if kind == "hash":
        return await store.redis.hgetall(key)
    if kind == "set":
        return sorted(await store.redis.smembers(key))
    if kind == "zset":
        return await store.redis.zrange(key, 0, -1)
    if kind == "stream":
        return await store.redis.xrange(key)
    return await store.redis.get(key)


async def test_report_retention_is_the_inventorys_and_configurable(
    make_server: MakeServer, store: Store
) -> None:
    stated = {d.name: d.max_ttl_s for d in INVENTORY}
    server = await make_server()
    alice = await server.signup("alice")
    await server.signup("bob")
    _, receipt = await _report(alice, "bob")
    ttl = await store.redis.ttl(keys.report(receipt["report"]))
    assert stated["abuse_report"] is not None
    assert stated["abuse_report"] - 5 < ttl <= stated["abuse_report"]
    short = await make_server(report_retention_s=3600)
    carol = await short.signup("carol")
    _, receipt = await _report(carol, "alice")
    assert 3500 < await store.redis.ttl(keys.report(receipt["report"])) <= 3600
    assert carol.profile is not None
    assert 3500 < await store.redis.ttl(keys.reports_filed(carol.profile.account_id)) <= 3600


async def test_reports_are_rate_limited_per_reporter(server: Server) -> None:
    alice = await server.signup("alice")
    statuses = [(await _report(alice, "nobody_here"))[0] for _ in range(7)]
    assert statuses[:5] == [202] * 5 and statuses[-1] == 429


# --- quality -----------------------------------------------------------------------------------


async def test_a_quality_flood_is_bounded(server: Server, store: Store) -> None:
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    op = await _operator(store)
    async with _connected_call(alice, bob, "bob") as (a, _b, call_id):
        for i in range(30):
            await a.send(_quality(call_id, float(i)))
        await a.send(m.Ping())
        await a.expect(m.Pong)  # every quality report before it was handled, and none answered
        _, detail = await _http(server, "GET", f"/v1/operator/calls/{call_id}", op)
    (leg,) = detail["legs"]
    assert [s["rtt_ms"] for s in leg["history"]] == [0.0]
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        text = await response.text()
    assert "callbook_quality_reports_dropped_total 29.0" in text


async def test_quality_for_a_call_not_connected_here_is_refused(server: Server) -> None:
    alice = await server.signup("alice")
    async with Line(alice) as line:
        await line.open()
        await line.send(_quality("0" * 32))
        refused = await line.expect(m.Error)
        assert (refused.code, refused.call_id) == ("unknown_call", "0" * 32)


async def test_quality_for_an_ended_call_is_refused_naming_the_call(server: Server) -> None:
    """An error about a call carries its call_id (protocol.md 11.13), also for a late report."""
    alice = await server.signup("alice")
    bob = await server.signup("bob")
    async with _connected_call(alice, bob, "bob") as (a, b, call_id):
        await a.send(m.Hangup(call_id=call_id))
        await a.expect(m.Ended)
        await b.expect(m.Ended)
        await b.send(_quality(call_id))
        refused = await b.expect(m.Error)
    assert (refused.code, refused.call_id, refused.ref) == ("unknown_call", call_id, None)


async def test_nodes_list_this_node_and_its_media_node(server: Server, store: Store) -> None:
    op = await _operator(store)
    alice = await server.signup("alice")
    async with Line(alice) as line:
        await line.open()
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the media node shows once it has answered its first poll (every second)
            _, body = await _http(server, "GET", "/v1/operator/nodes", op)
            kinds = {node["kind"]: node for node in body["nodes"]}
            if "media" in kinds or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
    assert set(kinds) == {"signaling", "media"}, body
    node = kinds["signaling"]
    assert node["id"].startswith("node-") and node["connections"] == 1
    assert node["active_calls"] == 0 and node["last_heartbeat"] >= node["started_at"]
    media = kinds["media"]
    assert media["last_heartbeat"] >= media["started_at"] > 0


async def test_the_event_stream_carries_snapshots(server: Server, store: Store) -> None:
    op = await _operator(store)
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/v1/operator/events",
                 headers={"Authorization": f"Bearer {op}"}) as response,
    ):  # fmt: skip
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readline() == b"event: snapshot\n"
        data = (await response.content.readline()).removeprefix(b"data: ")
    assert json.loads(data)["calls"] == []


def test_the_cli_reaches_the_embedded_store_of_a_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    data_dir = tmp_path / "data"
    # No server running: the command starts the store for itself, and stops it.
    assert cli.main(["operator", "create", "first", "--data-dir", str(data_dir)]) == 0
    assert not (data_dir / "valkey.sock").exists() or not _answers(data_dir)
    # A server's store running on the directory: the command uses it and leaves it running.
    running = EmbeddedValkey(data_dir)
    running.start()
    try:
        capsys.readouterr()
        assert cli.main(["operator", "list", "--data-dir", str(data_dir)]) == 0
        assert '"first"' in capsys.readouterr().out
        assert _answers(data_dir)
    finally:
        running.stop()


def _answers(data_dir: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(data_dir / "valkey.sock"))
        except OSError:
            return False
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
