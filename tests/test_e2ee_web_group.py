"""End-to-end encrypted group calls in the web client: headless Chromium participants through
the real SFU process, which carries a test-only tap on its forwarding path (tests/sfu_tap.py).

Each browser decodes the others while the SFU holds only SFrame ciphertext (a VP8 decoder makes
nothing of what it forwards; with the sender's key, taken from the sending page, the same
frames decode); every browser shows the same safety number, the one docs/e2ee.md §7 gives.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from playwright.async_api import Page, expect

from media.embedded import EmbeddedMedia
from tests import e2ee_reference as ref
from tests import e2ee_tap
from tests.conftest import Server, start_server, stop_server, suite_config
from tests.redis_cluster import StoreTarget
from tests.sfu_tap import TAP_ENV
from tests.test_browser import CHROMIUM, Browsers, account_of, screenshot, sign_up
from tests.test_browser import browsers as _browsers  # noqa: F401 (the ``browsers`` fixture)
from tests.test_browser_group import SFU_CALL_DECODES_JS, until, until_decoding

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# The page's group call: our participant id, our current sending key, and the E2EE counters.
KEYS_JS = """async () => {
  const group = window.callbook.group;
  const e2ee = group.e2ee;
  return {me: group.me, kid: e2ee.sendKey.kid, baseKey: Array.from(e2ee.sendKey.baseKey),
          participants: group.participants, stats: await e2ee.stats()};
}"""

# A 1:1 call through the SFU: our keys, and the keys we took for the other device.
CALL_KEYS_JS = """() => {
  const e2ee = window.callbook.call.e2ee;
  const pair = (device, media) => [Array.from(device), Array.from(media)];
  const own = pair(e2ee.identity.devicePublicRaw, e2ee.identity.mediaPublicRaw);
  return {own, peers: [...e2ee.peers.values()].map((p) => pair(p.deviceKey, p.mediaKey))};
}"""


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def browsers(_browsers: Browsers) -> Browsers:  # noqa: F811 (the imported fixture)
    return _browsers


@pytest.fixture
async def tapped(
    store: Any, store_target: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Server, Path]]:
    """A server whose SFU writes every packet it receives from publishers to a file."""
    tap = tmp_path / "sfu-tap.bin"
    monkeypatch.setenv(TAP_ENV, str(tap))
    media = EmbeddedMedia(launcher=(sys.executable, "-m", "tests.sfu_tap"))
    media.start()
    try:
        config = suite_config(store_target.url, media, redis_cluster=store_target.cluster)
        test_server, server = await start_server(config)
        try:
            yield server, tap
        finally:
            await stop_server(test_server, server)
    finally:
        media.stop()


def _clearest_layer(
    sent: e2ee_tap.Sent, base_key: bytes, kid: int
) -> tuple[list[bytes], list[bytes | None]]:
    """The frames sent under key ``kid`` of the layer whose decrypted frames decode best, and
    their pictures. A layer nobody receives gets no keyframe after the key changes (the SFU asks
    keyframes only of the layers it forwards, which follow each viewer's tile size): a
    decoder makes nothing of it."""
    best: tuple[list[bytes], list[bytes | None]] = ([], [])
    for frames in sent.layers or [sent.video]:
        current = [f for f in frames if ref.parse_frame("video", f)[1] == kid]  # type: ignore[index]
        clear = e2ee_tap.vp8_pictures([ref.decrypt_frame(base_key, "video", f) for f in current])
        if sum(p is not None for p in clear) > sum(p is not None for p in best[1]):
            best = (current, clear)
    return best


async def join(page: Page) -> None:
    screen = page.locator("#screen-group")
    await expect(screen).to_have_attribute("data-state", "incoming")
    await page.get_by_role("button", name="Join group call").click()
    await expect(screen).to_have_attribute("data-state", "joined", timeout=30_000)


async def test_encrypted_group_call_of_three_browsers(
    tapped: tuple[Server, Path], browsers: Browsers
) -> None:
    server, tap = tapped
    people = [("alice", "Alice Liddell"), ("bob", "Bob Builder"), ("carol", "Carol Danvers")]
    pages = [await browsers.page() for _ in people]
    for page, (handle, name) in zip(pages, people, strict=True):
        await sign_up(page, server, handle, name)
    alice, bob, carol = pages

    await alice.get_by_role("button", name="Group call").click()
    await alice.fill("#group-handles", "bob carol")
    await alice.locator("#form-group").get_by_role("radio", name="Video", exact=True).check()
    await alice.click("#group-start")
    await join(bob)
    await join(carol)

    for page in pages:
        await until_decoding(page, 2)
        badge = page.locator("#group-e2ee")
        await expect(badge).to_have_text("End-to-end encrypted")
        await expect(badge).to_have_attribute("data-state", "encrypted")
        await expect(page.locator("#group-safety")).to_be_visible()

    # One safety number on every screen, the one docs/e2ee.md §7 computes from the participants'
    # published keys.
    numbers = [await p.locator("#group-safety-number").text_content() for p in pages]
    keys = [await p.evaluate(KEYS_JS) for p in pages]
    listed = keys[0]["participants"]
    assert len(listed) == 3
    expected = ref.safety_number([(unb64(p["device_key"]), unb64(p["media_key"])) for p in listed])
    assert numbers == [expected] * 3
    # Read out as one sentence with what to do with it.
    await expect(alice.locator("#group-safety")).to_have_text(
        f"Safety number {expected}. Compare this number with everyone in the call. If all of you"
        " see the same number, only your devices hold the keys to this call."
    )
    await screenshot(alice, "group-call-e2ee.png")

    for mine in keys:
        stats = mine["stats"]
        assert stats["decrypted"] > 0 and stats["encrypted"] > 0, stats
        assert stats["auth_failed"] == stats["malformed"] == stats["bad_blob"] == 0, stats

    # The SFU forwarded only ciphertext: every frame it saw is an SFrame behind its clear
    # prefix; a VP8 decoder makes nothing of the video, and the sender's key opens it.
    seen = e2ee_tap.read(tap)
    assert set(seen) == {k["me"] for k in keys}
    for mine in keys:
        sent = seen[mine["me"]]
        assert len(sent.video) > 20 and len(sent.audio) > 50
        frames = [("video", f) for f in sent.video] + [("audio", a) for a in sent.audio]
        parsed = [ref.parse_frame(kind, data) for kind, data in frames]
        assert all(parts is not None for parts in parsed)
        base_key = bytes(mine["baseKey"])
        current, clear = _clearest_layer(sent, base_key, mine["kid"])
        assert sum(picture is not None for picture in clear) > 10
        # libvpx may make a picture of a ciphertext frame (its size is in the clear prefix), but
        # never the sender's: nothing like the picture the clear frame gives.
        tapped = e2ee_tap.vp8_pictures(current)
        for seen_picture, clear_picture in zip(tapped, clear, strict=True):
            if seen_picture is not None and clear_picture is not None:
                assert e2ee_tap.difference(seen_picture, clear_picture) > 20
        for kind, data in frames:
            if ref.parse_frame(kind, data)[1] == mine["kid"]:  # type: ignore[index]
                ref.decrypt_frame(base_key, kind, data)  # authenticates: sealed with that key

    # Carol leaves: Alice and Bob draw new keys (Carol never gets them) and go on decoding
    # each other; the safety number changes with the membership.
    await carol.get_by_role("button", name="Leave group call").click()
    for page in (alice, bob):
        await expect(page.locator("#group-grid .tile")).to_have_count(2)
        await expect(page.locator("#group-safety-number")).not_to_have_text(expected)
    after = [await p.evaluate(KEYS_JS) for p in (alice, bob)]
    assert all(a["kid"] > k["kid"] for a, k in zip(after, keys, strict=False))
    two = ref.safety_number(
        [(unb64(p["device_key"]), unb64(p["media_key"])) for p in after[0]["participants"]]
    )
    await expect(bob.locator("#group-safety-number")).to_have_text(two)
    decoded = (await bob.evaluate(KEYS_JS))["stats"]["decrypted"]

    async def more() -> bool:
        return bool((await bob.evaluate(KEYS_JS))["stats"]["decrypted"] > decoded + 50)

    await until(more, "Bob decrypting Alice's media under her new key")


async def test_a_call_between_strangers_through_the_sfu_is_encrypted_end_to_end(
    tapped: tuple[Server, Path], browsers: Browsers
) -> None:
    """Strangers' calls are relayed (hide-my-IP) and, with no TURN here, through the SFU."""
    server, tap = tapped
    alice, bob = await browsers.page(), await browsers.page()
    await sign_up(alice, server, "alice", "Alice Liddell")
    await sign_up(bob, server, "bob", "Bob Builder")
    await alice.fill("#dial-handle", "bob")
    await alice.click("#dial-video")
    await expect(bob.locator("#screen-call")).to_have_attribute("data-state", "incoming")
    await bob.get_by_role("button", name="Answer with video").click()
    for page in (alice, bob):
        await expect(page.locator("#screen-call")).to_have_attribute("data-state", "connected")
        await until(lambda p=page: p.evaluate(SFU_CALL_DECODES_JS), "media through the SFU")  # type: ignore[misc]
        await expect(page.locator("#call-e2ee")).to_have_text("End-to-end encrypted")
    # Both show the same safety number: the one of docs/e2ee.md from both devices' keys.
    mine = await alice.evaluate(CALL_KEYS_JS)
    theirs = await bob.evaluate(CALL_KEYS_JS)
    assert mine["peers"] == [theirs["own"]] and theirs["peers"] == [mine["own"]]
    expected = ref.safety_number([(bytes(d), bytes(m)) for d, m in (mine["own"], theirs["own"])])
    for page in (alice, bob):
        await expect(page.locator("#call-safety-number")).to_have_text(expected)
    await screenshot(alice, "call-sfu-e2ee.png")
    seen = e2ee_tap.read(tap)
    assert len(seen) == 2
    for sent in seen.values():
        assert sent.video and sent.audio
        assert all(ref.parse_frame("video", frame) for frame in sent.video)


# The stored identity as it was before media keys (no mediaKeyPair, never published).
FORGET_MEDIA_KEY_JS = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("callbook");
  open.onsuccess = () => {
    const db = open.result;
    const tx = db.transaction("identity", "readwrite");
    const store = tx.objectStore("identity");
    store.get("self").onsuccess = (event) => {
      const record = event.target.result;
      delete record.mediaKeyPair;
      delete record.mediaKeyPublished;
      store.put(record, "self");
    };
    tx.oncomplete = () => { db.close(); resolve(); };
    tx.onerror = () => reject(tx.error);
  };
})"""

MEDIA_KEY_JS = """() => new Promise((resolve) => {
  const open = indexedDB.open("callbook");
  open.onsuccess = () => {
    const request = open.result.transaction("identity").objectStore("identity").get("self");
    request.onsuccess = async () => {
      const record = request.result;
      open.result.close();
      if (!record.mediaKeyPublished || !record.mediaKeyPair) return resolve(null);
      const raw = await crypto.subtle.exportKey("raw", record.mediaKeyPair.publicKey);
      resolve(btoa(String.fromCharCode(...new Uint8Array(raw)))
        .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, ""));
    };
  };
})"""


async def test_a_browser_from_before_media_keys_publishes_one_when_it_starts(
    server: Server, browsers: Browsers
) -> None:
    page = await browsers.page()
    code = await sign_up(page, server, "alice", "Alice Liddell")
    signed_up = await page.evaluate(MEDIA_KEY_JS)
    assert signed_up  # made at sign-up, sent with it
    me = await account_of(server, "alice", code)
    device = next(d for d in await me.devices() if d.media_key == signed_up)

    await page.evaluate(FORGET_MEDIA_KEY_JS)
    await page.reload()
    await expect(page.locator("#screen-home")).to_be_visible()
    fresh = await until(lambda: page.evaluate(MEDIA_KEY_JS), "a new media key, published")
    assert fresh != signed_up
    published = next(d for d in await me.devices() if d.id == device.id)
    assert published.media_key == fresh
    assert published.media_key_signature
    # Signed by the browser's device key (verify raises if not).
    Ed25519PublicKey.from_public_bytes(unb64(device.public_key)).verify(
        unb64(published.media_key_signature), ref.media_key_message(unb64(fresh))
    )


# Open, with the page's own media key, every key blob it was sent: the base keys it had.
OPEN_BLOBS_JS = """async ({blobs, deviceKeys}) => {
  const keystore = await import("/static/sdk/keystore.js");
  const keyblob = await import("/static/sdk/keyblob.js");
  const {fromB64url, hex} = await import("/static/sdk/bytes.js");
  const own = await keystore.callKeys(await keystore.loadIdentity());
  const opened = [];
  for (const m of blobs) {
    const baseKey = await keyblob.openBlob({
      blob: fromB64url(m.blob), callId: m.call_id, sender: m.participant, recipient: m.me,
      kid: m.kid, senderDeviceKey: fromB64url(deviceKeys[m.participant]),
      mediaKeyPair: {privateKey: own.mediaKeyPair.privateKey, publicRaw: own.mediaPublicRaw},
    });
    opened.push({sender: m.participant, kid: m.kid, key: hex(baseKey)});
  }
  return opened;
}"""


def record_key_messages(page: Page) -> list[dict[str, Any]]:
    """Every media_key and participants message the page's call WebSocket receives."""
    heard: list[dict[str, Any]] = []

    def on_frame(payload: str | bytes) -> None:
        message = json.loads(payload)
        if message.get("type") in ("media_key", "participants", "joined"):
            heard.append(message)

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    return heard


async def test_a_late_joiner_and_a_leaver_cannot_open_media_sent_outside_their_time(
    tapped: tuple[Server, Path], browsers: Browsers
) -> None:
    server, tap = tapped
    alice, bob, carol = [await browsers.page() for _ in range(3)]
    heard = record_key_messages(carol)
    for page, handle in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        await sign_up(page, server, handle)
    await alice.get_by_role("button", name="Group call").click()
    await alice.fill("#group-handles", "bob carol")
    await alice.click("#group-start")
    await join(bob)
    await until_decoding(bob, 1, video=False)  # Alice and Bob talk before Carol joins
    await join(carol)
    await until_decoding(carol, 2, video=False)
    await carol.get_by_role("button", name="Leave group call").click()
    await expect(alice.locator("#group-grid .tile")).to_have_count(2)
    before = (await alice.evaluate(KEYS_JS))["stats"]["encrypted"]

    async def sent_more() -> bool:
        return bool((await alice.evaluate(KEYS_JS))["stats"]["encrypted"] > before + 100)

    await until(sent_more, "Alice sending after Carol left")
    alice_id = await alice.evaluate("() => window.callbook.group.me")

    # What Carol's device could ever open: every blob it was sent, with its own media key.
    me = next(m["participant"] for m in heard if m["type"] == "joined")
    device_keys = {
        p["participant"]: p["device_key"]
        for m in heard
        if m["type"] == "participants"
        for p in m["participants"]
    }
    blobs = [{**m, "me": me} for m in heard if m["type"] == "media_key"]
    opened = await carol.evaluate(OPEN_BLOBS_JS, {"blobs": blobs, "deviceKeys": device_keys})
    carol_had = {o["kid"]: bytes.fromhex(o["key"]) for o in opened if o["sender"] == alice_id}
    assert carol_had, opened

    # Alice's frames as the SFU forwarded them, by key: those under keys Carol was given open
    # with them; those from before she joined and after she left open with none of her keys.
    sent = e2ee_tap.read(tap)[alice_id].audio
    by_kid: dict[int, list[bytes]] = {}
    for frame in sent:
        parts = ref.parse_frame("audio", frame)
        assert parts is not None
        by_kid.setdefault(parts[1], []).append(frame)
    earlier = [kid for kid in by_kid if kid < min(carol_had)]
    later = [kid for kid in by_kid if kid > max(carol_had)]
    assert earlier and later, (sorted(by_kid), sorted(carol_had))
    opens = [
        ref.decrypt_frame(carol_had[kid], "audio", frame)
        for kid in carol_had
        for frame in by_kid.get(kid, [])[:20]
    ]
    assert opens  # the keys Carol had do open what was sent while she was in the call
    for kid in earlier + later:
        for frame in by_kid[kid][:20]:
            for key in carol_had.values():
                with pytest.raises(InvalidTag):
                    ref.decrypt_frame(key, "audio", frame)
