"""The JavaScript SDK (signaling/web/sdk/): its declarations agree with docs/asyncapi.json, the
server hands it out, and two Chromium pages driving only the SDK sign up by device key, look
each other up, add each other, and call — 1:1 peer to peer and as a group through the SFU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page

from signaling.web import typings
from tests.conftest import Server
from tests.test_browser import CHROMIUM, Browsers
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "signaling" / "web" / "sdk"
ASYNCAPI = json.loads((ROOT / "docs" / "asyncapi.json").read_text())


def _interfaces(text: str) -> dict[str, set[str]]:
    """``export interface Name { field?: type; }`` → {Name: {field, …}}."""
    out: dict[str, set[str]] = {}
    for name, body in re.findall(r"export interface (\w+) \{\n(.*?)\n\}", text, re.S):
        out[name] = set(re.findall(r"^  (\w+)\??:", body, re.M))
    return out


def test_protocol_declarations_are_generated_from_the_asyncapi_document() -> None:
    assert (SDK / "protocol.d.ts").read_text() == typings.render(ASYNCAPI), (
        "signaling/web/sdk/protocol.d.ts drifted from docs/asyncapi.json: regenerate it with "
        "`python -m signaling.web.typings > signaling/web/sdk/protocol.d.ts`"
    )


def test_every_message_of_the_document_is_declared_with_its_fields() -> None:
    declared = _interfaces((SDK / "protocol.d.ts").read_text())
    schemas = ASYNCAPI["components"]["schemas"]
    for message in ASYNCAPI["components"]["messages"].values():
        name = message["payload"]["$ref"].rsplit("/", 1)[-1]
        assert declared[name] == set(schemas[name]["properties"]), name
        tag = schemas[name]["properties"]["type"]["enum"][0]
        assert message["name"] == tag


def test_the_api_declarations_use_only_declared_messages() -> None:
    api = (SDK / "callbook.d.ts").read_text()
    declared = set(_interfaces((SDK / "protocol.d.ts").read_text()))
    imported = re.search(r'import type \{(.*?)\} from "\./protocol";', api, re.S)
    assert imported is not None
    names = {part.split(" as ")[0].strip() for part in imported.group(1).split(",") if part.strip()}
    assert names <= declared | {"EndReason", "ErrorCode", "ClientMessage", "ServerMessage"}
    # Every class the module exports is declared, and every declared class is exported.
    entry = (SDK / "callbook.js").read_text()
    exported = {
        name.strip().split(" as ")[-1]
        for group in re.findall(r"export \{(.*?)\} from", entry)
        for name in group.split(",")
    }
    classes = set(re.findall(r"^export class (\w+)", api, re.M))
    assert classes <= exported, classes - exported
    assert {"Callbook", "Call", "GroupCall", "Line", "Api", "ApiError", "Session"} <= classes


async def test_the_sdk_is_served_with_its_declarations(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/static/sdk/callbook.js") as response:
            assert response.status == 200
            assert "javascript" in response.content_type
            assert response.headers["Cache-Control"] == "no-cache"
        for name in ("callbook.d.ts", "protocol.d.ts"):
            async with http.get(f"{server.url}/static/sdk/{name}") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                assert "export" in await response.text()
        for path in ("/static/sdk/", "/static/sdk/nope.js", "/static/sdk/../pages.py"):
            async with http.get(server.url + path) as response:
                assert response.status == 404, path


# --- in Chromium -------------------------------------------------------------------------------

# A page of the server's origin (the call WebSocket accepts only it) that uses nothing but the
# SDK: a Callbook of its own, not the web client's, with its key kept in memory only.
SIGN_UP_JS = """async (handle) => {
  const sdk = await import("/static/sdk/callbook.js");
  const cb = new sdk.Callbook();
  const t = { sdk, cb, call: null, incoming: [] };
  window.sdkTest = t;
  const done = await cb.signUp(handle, { displayName: handle.toUpperCase(), save: false });
  cb.addEventListener("incoming", (event) => {
    t.call = event.detail;
    t.incoming.push({ group: event.detail instanceof sdk.GroupCall, state: event.detail.state });
  });
  cb.connect();
  await new Promise((resolve) => {
    if (cb.line.state === "online") resolve();
    cb.line.addEventListener("state", () => cb.line.state === "online" && resolve());
  });
  return { handle: done.account.handle, code: done.recoveryCode, saved: done.saved };
}"""

# Inbound RTP of the SDK call's peer connection(s): frames decoded and audio packets.
RECEIVED_JS = """async () => {
  const call = window.sdkTest.call;
  const pcs = call.sfu ? [...new Set(call.sfu.receiving().map((r) => r.pc))] : [call.pc];
  const out = { video: 0, audio: 0 };
  for (const pc of pcs) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") out.video += s.framesDecoded || 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") out.audio += s.packetsReceived || 0;
    });
  }
  return out;
}"""

DEADLINE_MS = 30_000


async def _sdk_page(browsers: Browsers, server: Server, handle: str) -> Page:
    page = await browsers.page()
    await page.goto(server.url + "/")
    signed = await page.evaluate(SIGN_UP_JS, handle)
    assert signed["handle"] == handle and re.fullmatch(r"[a-z2-7-]{39}", signed["code"])
    assert signed["saved"] is False
    return page


async def _until(page: Page, condition: str) -> None:
    await page.wait_for_function(condition, timeout=DEADLINE_MS)


async def _until_media_flows(page: Page) -> None:
    await _until(
        page,
        """async () => {
          const got = await ("""
        + RECEIVED_JS
        + """)();
          return got.video > 0 && got.audio > 0;
        }""",
    )


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.mark.slow
@needs_chromium
async def test_two_browsers_sign_up_look_up_and_call_through_the_sdk(
    server: Server,
    browsers: Browsers,
) -> None:
    alice = await _sdk_page(browsers, server, "sdkalice")
    bob = await _sdk_page(browsers, server, "sdkbob")

    # Lookup: a card for someone who exists, the one "no" for a handle nobody has.
    card = await alice.evaluate("() => window.sdkTest.cb.lookup('sdkbob')")
    assert card["handle"] == "sdkbob" and card["display_name"] == "SDKBOB"
    missing = await alice.evaluate(
        "() => window.sdkTest.cb.lookup('nobodyhere').then(() => null, (e) => e.code)"
    )
    assert missing == "not_found"

    # Contacts both ways: the call goes peer to peer (no relay for strangers).
    await alice.evaluate("() => window.sdkTest.cb.addContact('sdkbob', 'Bobby')")
    await bob.evaluate("() => window.sdkTest.cb.addContact('sdkalice')")
    contacts = await alice.evaluate("() => window.sdkTest.cb.contacts()")
    assert [(c["handle"], c["nickname"]) for c in contacts] == [("sdkbob", "Bobby")]

    # A 1:1 video call: Bob's browser rings, he answers with video, both decode the other.
    await alice.evaluate(
        """() => {
          window.sdkTest.call = window.sdkTest.cb.call({ handle: "sdkbob" }, { media: "video" });
        }"""
    )
    await _until(bob, "() => window.sdkTest.call && window.sdkTest.call.state === 'incoming'")
    incoming = await bob.evaluate(
        "() => ({...window.sdkTest.incoming[0], from: window.sdkTest.call.peer.handle})"
    )
    assert incoming == {"group": False, "state": "incoming", "from": "sdkalice"}
    await bob.evaluate("() => window.sdkTest.call.answer(true)")
    for page in (alice, bob):
        await _until(page, "() => window.sdkTest.call.state === 'connected'")
        await _until_media_flows(page)
    assert await alice.evaluate("() => window.sdkTest.call.sfu") is None

    # Mute travels to the other side; hanging up ends the call on both.
    await alice.evaluate("() => window.sdkTest.call.toggleMute()")
    await _until(bob, "() => window.sdkTest.call.peerMuted === true")
    await alice.evaluate("() => window.sdkTest.call.hangup()")
    await _until(bob, "() => window.sdkTest.call.state === 'ended'")
    ends = [
        await page.evaluate("() => [window.sdkTest.call.endReason, window.sdkTest.cb.calls.size]")
        for page in (alice, bob)
    ]
    assert ends == [["hangup", 0], ["hangup", 0]]


@pytest.mark.slow
@needs_chromium
async def test_a_group_call_through_the_sfu_with_the_sdk(
    server: Server,
    browsers: Browsers,
) -> None:
    host = await _sdk_page(browsers, server, "sdkhost")
    guest = await _sdk_page(browsers, server, "sdkguest")
    await guest.evaluate("() => window.sdkTest.cb.addContact('sdkhost')")

    await host.evaluate(
        "() => { window.sdkTest.call = window.sdkTest.cb.group(['sdkguest'], {media: 'video'}); }"
    )
    await _until(guest, "() => window.sdkTest.call && window.sdkTest.call.state === 'incoming'")
    assert await guest.evaluate("() => window.sdkTest.incoming[0].group") is True
    assert await guest.evaluate("() => window.sdkTest.call.host.handle") == "sdkhost"
    await guest.evaluate("() => window.sdkTest.call.accept()")
    for page in (host, guest):
        await _until(page, "() => window.sdkTest.call.state === 'joined'")
        await _until(page, "() => window.sdkTest.call.participants.length === 2")
        await _until_media_flows(page)
    # The host sees the guest's mute in ``participants``.
    await guest.evaluate("() => window.sdkTest.call.toggleMute()")
    await _until(
        host,
        """() => window.sdkTest.call.participants.some(
             (p) => p.person.handle === 'sdkguest' && p.audio_muted)""",
    )
    await guest.evaluate("() => window.sdkTest.call.hangup()")
    await _until(host, "() => window.sdkTest.call.participants.length === 1")
    assert await guest.evaluate(
        "() => [window.sdkTest.call.state, window.sdkTest.cb.calls.size]"
    ) == [
        "ended",
        0,
    ]
    await host.evaluate("() => window.sdkTest.call.hangup()")
    assert await host.evaluate("() => window.sdkTest.cb.calls.size") == 0
