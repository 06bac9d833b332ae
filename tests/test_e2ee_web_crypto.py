"""The browser's E2EE crypto (signaling/web/sdk/sframe.js, keyblob.js, safety.js, keyschedule.js)
run in headless Chromium on fixed keys and nonces, and compared byte for byte with the Python
of tests/e2ee_reference.py (written from docs/e2ee.md), with RFC 9605's test vectors, and with
the Python SDK's own modules (signaling/sdk/e2ee/).

The modules are loaded from the real page server (``crypto.subtle`` needs a secure context,
which http://127.0.0.1 is and a data: URL is not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from playwright.async_api import Page, async_playwright

from signaling import pages
from signaling.sdk.e2ee import keyblob as sdk_keyblob
from signaling.sdk.e2ee import safety as sdk_safety
from signaling.sdk.e2ee import sframe as sdk_sframe
from tests import e2ee_reference as ref
from tests.test_browser import CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]

# RFC 9605 Appendix C.3, cipher suite 0x0004 (AES_128_GCM_SHA256_128).
RFC_C3 = {
    "kid": 0x123,
    "ctr": 0x4567,
    "base_key": "000102030405060708090a0b0c0d0e0f",
    "sframe_key": "d34f547f4ca4f9a7447006fe7fcbf768",
    "sframe_salt": "75234edefe07819026751816",
    "metadata": "4945544620534672616d65205747",
    "nonce": "75234edefe07819026755d71",
    "pt": "64726166742d696574662d736672616d652d656e63",
    "ct": "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb",
}

BASE_KEY = bytes(range(0xA0, 0xB0))
# A VP8 keyframe (frame tag P bit 0, start code, 640x480), a delta frame, an Opus frame, an
# Opus frame that is all prefix. (A VP8 frame is never shorter than its prefix: its frame tag
# is 3 bytes, 10 with a keyframe's start code and size.)
FRAMES = [
    ("video", bytes.fromhex("5043009d012a8002e001") + bytes(range(40))),
    ("video", bytes.fromhex("3102") + bytes(range(1, 30))),
    ("audio", bytes.fromhex("78") + bytes(range(7, 60))),
    ("audio", bytes.fromhex("fc")),
]
FRAME_CASES = [(kind, frame, kid, ctr) for kind, frame in FRAMES for kid, ctr in [(0, 0), (9, 300)]]
HEADER_CASES = [
    (0, 0), (7, 7), (8, 8), (0x123, 0x4567), (255, 256), (2**32, 2**40 + 5), (2**53 - 1, 3),
]  # fmt: skip


def pkcs8(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()).hex()


def ed25519(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def x25519(seed: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A page of the real page server (signaling/pages.py), with the web client's modules."""
    app = web.Application()
    pages.install(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    errors: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await browser.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                await page.goto(str(server.make_url("/static/icon.svg")))
                yield page
            finally:
                await browser.close()
    finally:
        await server.close()
    assert errors == []


IMPORTS = """
  const bytes = await import("/static/sdk/bytes.js");
  const sframe = await import("/static/sdk/sframe.js");
  const keyblob = await import("/static/sdk/keyblob.js");
  const safety = await import("/static/sdk/safety.js");
  const schedule = await import("/static/sdk/keyschedule.js");
  const {hex, fromHex} = bytes;
  const ed = (k) => crypto.subtle.importKey("pkcs8", fromHex(k), "Ed25519", false, ["sign"]);
  const xk = (k) => crypto.subtle.importKey("pkcs8", fromHex(k), "X25519", false, ["deriveBits"]);
"""


async def run(page: Page, body: str, args: Any = None) -> Any:
    return await page.evaluate(f"async (args) => {{ {IMPORTS} {body} }}", args)


async def test_sframe_matches_rfc_9605_appendix_c(page: Page) -> None:
    got = await run(
        page,
        """
        const keys = await sframe.deriveKey(fromHex(args.base_key), args.kid, true);
        const key = new Uint8Array(await crypto.subtle.exportKey("raw", keys.key));
        const sealed = await sframe.seal(keys, args.ctr, fromHex(args.metadata), fromHex(args.pt));
        const header = sframe.parseHeader(sealed);
        const opened = await sframe.open(keys, header, sealed.subarray(0, header.length),
          fromHex(args.metadata), sealed.subarray(header.length));
        const nonce = sframe.frameNonce(keys.salt, args.ctr);
        return {key: hex(key), salt: hex(keys.salt), nonce: hex(nonce),
                ct: hex(sealed), pt: hex(opened), header};
        """,
        RFC_C3,
    )
    assert got["key"] == RFC_C3["sframe_key"]
    assert got["salt"] == RFC_C3["sframe_salt"]
    assert got["nonce"] == RFC_C3["nonce"]
    assert got["ct"] == RFC_C3["ct"]
    assert got["pt"] == RFC_C3["pt"]
    assert got["header"] == {"kid": 0x123, "ctr": 0x4567, "length": 5}
    # The Python reference agrees with the RFC too, so it is a fair judge of the rest.
    key, salt = ref.sframe_key_salt(bytes.fromhex(RFC_C3["base_key"]), 0x123)
    assert (key.hex(), salt.hex()) == (RFC_C3["sframe_key"], RFC_C3["sframe_salt"])
    sealed = ref.sframe_seal(
        bytes.fromhex(RFC_C3["base_key"]),
        0x123,
        0x4567,
        bytes.fromhex(RFC_C3["metadata"]),
        bytes.fromhex(RFC_C3["pt"]),
    )
    assert sealed.hex() == RFC_C3["ct"]


async def test_headers_match_python_both_ways(page: Page) -> None:
    got = await run(
        page,
        """
        return args.map(([kid, ctr]) => {
          const header = sframe.encodeHeader(kid, ctr);
          return [hex(header), sframe.parseHeader(header)];
        });
        """,
        HEADER_CASES,
    )
    for (kid, ctr), (header, parsed) in zip(HEADER_CASES, got, strict=True):
        expected = ref.sframe_header(kid, ctr)
        assert header == expected.hex(), (kid, ctr)
        assert parsed == {"kid": kid, "ctr": ctr, "length": len(expected)}


async def test_frames_match_python_and_keep_the_vp8_and_opus_prefix_in_clear(page: Page) -> None:
    cases = [[kind, frame.hex(), kid, ctr] for kind, frame, kid, ctr in FRAME_CASES]
    python = [
        ref.encrypt_frame(BASE_KEY, kid, ctr, kind, frame).hex()
        for kind, frame, kid, ctr in FRAME_CASES
    ]
    got = await run(
        page,
        """
        const out = [];
        for (const [i, [kind, frame, kid, ctr]] of args.cases.entries()) {
          const keys = await sframe.deriveKey(fromHex(args.base), kid);
          const encrypted = await sframe.encryptFrame(keys, ctr, kind, fromHex(frame));
          // And the other way: the Python-made frame decrypts in the browser.
          const parts = sframe.splitFrame(kind, fromHex(args.python[i]));
          const clear = await sframe.decryptFrame(keys, parts);
          out.push({encrypted: hex(encrypted), clear: hex(clear), kid: parts.header.kid,
                    ctr: parts.header.ctr, prefix: parts.prefix.length});
        }
        return out;
        """,
        {"cases": cases, "base": BASE_KEY.hex(), "python": python},
    )
    for (kind, frame, kid, ctr), mine, theirs in zip(FRAME_CASES, got, python, strict=True):
        assert mine["encrypted"] == theirs
        assert mine["clear"] == frame.hex()
        assert (mine["kid"], mine["ctr"]) == (kid, ctr)
        prefix = ref.prefix_length(kind, frame)
        assert mine["prefix"] == prefix
        # The prefix is the frame's own first bytes, in clear; nothing after it is.
        assert bytes.fromhex(theirs)[:prefix] == frame[:prefix]
    assert [ref.prefix_length(k, f) for k, f in FRAMES] == [10, 3, 1, 1]


async def test_bad_frames_are_refused_not_decrypted(page: Page) -> None:
    good = ref.encrypt_frame(BASE_KEY, 3, 1000, "video", FRAMES[0][1])
    flipped = bytearray(good)
    flipped[-1] ^= 1
    in_prefix = bytearray(good)
    in_prefix[5] ^= 1  # the clear prefix is authenticated (it is the AAD's metadata)
    got = await run(
        page,
        """
        const keys = await sframe.deriveKey(fromHex(args.base), 3);
        const other = await sframe.deriveKey(new Uint8Array(16), 3);
        const attempt = async (frame, k) => {
          const parts = sframe.splitFrame("video", fromHex(frame));
          if (!parts) return "malformed";
          try { await sframe.decryptFrame(k, parts); return "ok"; }
          catch (error) { return error.name; }
        };
        return [
          await attempt(args.good, keys), await attempt(args.flipped, keys),
          await attempt(args.prefix, keys), await attempt(args.good, other),
          await attempt(args.good.slice(0, 2 * 20), keys), await attempt("", keys),
          await attempt("50430099", keys),
        ];
        """,
        {
            "base": BASE_KEY.hex(),
            "good": good.hex(),
            "flipped": flipped.hex(),
            "prefix": in_prefix.hex(),
        },
    )
    assert got == [
        "ok",
        "OperationError",
        "OperationError",
        "OperationError",
        "malformed",
        "malformed",
        "malformed",
    ]


async def test_key_blobs_and_media_key_signatures_match_python(page: Page) -> None:
    alice_device, bob_device = ed25519(1), ed25519(2)
    bob_media, ephemeral = x25519(3), x25519(4)
    call = {"call_id": "c-9Z_x", "sender": "p-alice", "recipient": "p-bob", "kid": 7}
    python_blob = ref.seal_blob(
        base_key=BASE_KEY,
        recipient_media=raw_public(bob_media),
        signing_key=alice_device,
        ephemeral=ephemeral,
        **call,
    )
    assert len(python_blob) == 128
    args = {
        **call,
        "base": BASE_KEY.hex(),
        "alice_device": pkcs8(alice_device),
        "alice_device_pub": raw_public(alice_device).hex(),
        "bob_device": pkcs8(bob_device),
        "bob_media": pkcs8(bob_media),
        "bob_media_pub": raw_public(bob_media).hex(),
        "eph": pkcs8(ephemeral),
        "eph_pub": raw_public(ephemeral).hex(),
        "python_blob": python_blob.hex(),
    }
    got = await run(
        page,
        """
        const signingKey = await ed(args.alice_device);
        const blob = await keyblob.sealBlob({
          baseKey: fromHex(args.base), callId: args.call_id, sender: args.sender,
          recipient: args.recipient, kid: args.kid, recipientMediaKey: fromHex(args.bob_media_pub),
          signingKey, ephemeral: {privateKey: await xk(args.eph), publicRaw: fromHex(args.eph_pub)},
        });
        const mediaKeyPair = {
          privateKey: await xk(args.bob_media), publicRaw: fromHex(args.bob_media_pub)};
        const open = (b, overrides = {}) => keyblob.openBlob({
          blob: fromHex(b), callId: args.call_id, sender: args.sender, recipient: args.recipient,
          kid: args.kid, mediaKeyPair, senderDeviceKey: fromHex(args.alice_device_pub),
          ...overrides,
        }).then((key) => hex(key), (error) => error.constructor.name);
        const fresh = await keyblob.sealBlob({
          baseKey: fromHex(args.base), callId: args.call_id, sender: args.sender,
          recipient: args.recipient, kid: args.kid, recipientMediaKey: fromHex(args.bob_media_pub),
          signingKey,
        });
        const flipped = fromHex(args.python_blob); flipped[40] ^= 1;
        const bobSigns = await ed(args.bob_device);
        const signature = await keyblob.signMediaKey(bobSigns, fromHex(args.bob_media_pub));
        return {
          blob: hex(blob),
          opened: await open(args.python_blob),
          fresh: [fresh.length, await open(hex(fresh))],
          wrongKid: await open(args.python_blob, {kid: args.kid + 1}),
          wrongCall: await open(args.python_blob, {callId: "other"}),
          wrongSender: await open(args.python_blob, {senderDeviceKey: fromHex(args.bob_media_pub)}),
          tampered: await open(hex(flipped)),
          short: await open(args.python_blob.slice(0, 200)),
          signature: hex(signature),
          verifies: await keyblob.verifyMediaKey(
            fromHex(args.alice_device_pub), fromHex(args.bob_media_pub), signature),
        };
        """,
        args,
    )
    assert got["blob"] == python_blob.hex()
    assert got["opened"] == BASE_KEY.hex()
    assert got["fresh"] == [128, BASE_KEY.hex()]
    for refused in ("wrongKid", "wrongCall", "wrongSender", "tampered", "short"):
        assert got[refused] == "BlobError", refused
    # The browser's fresh blob opens in Python as well.
    assert bob_device.sign(ref.media_key_message(raw_public(bob_media))).hex() == got["signature"]
    assert got["verifies"] is False  # signed by Bob's device key, checked against Alice's


async def test_browser_blobs_open_in_python(page: Page) -> None:
    alice_device, bob_media = ed25519(5), x25519(6)
    got = await run(
        page,
        """
        const signingKey = await ed(args.alice);
        const blob = await keyblob.sealBlob({baseKey: fromHex(args.base), callId: "c1", sender: "a",
          recipient: "b", kid: 2 ** 40, recipientMediaKey: fromHex(args.bob), signingKey});
        return hex(blob);
        """,
        {"alice": pkcs8(alice_device), "bob": raw_public(bob_media).hex(), "base": BASE_KEY.hex()},
    )
    opened = ref.open_blob(
        blob=bytes.fromhex(got),
        call_id="c1",
        sender="a",
        recipient="b",
        kid=2**40,
        media_key=bob_media,
        sender_device_key=raw_public(alice_device),
    )
    assert opened == BASE_KEY


async def test_safety_number_matches_python(page: Page) -> None:
    people = [(raw_public(ed25519(10 + i)), raw_public(x25519(20 + i))) for i in range(4)]
    calls = [people[:2], people[:3], people, list(reversed(people))]
    got = await run(
        page,
        """
        const out = [];
        for (const call of args) {
          const keys = call.map(([d, m]) => ({deviceKey: fromHex(d), mediaKey: fromHex(m)}));
          out.push(await safety.safetyNumber(keys));
        }
        return out;
        """,
        [[[d.hex(), m.hex()] for d, m in call] for call in calls],
    )
    assert got == [ref.safety_number(call) for call in calls]
    assert got[2] == got[3]  # the order participants are listed in does not matter
    assert got[0] != got[1]  # a joiner changes it
    assert all(len(number) == 35 and number.count(" ") == 5 for number in got)


async def test_key_schedule_bookkeeping(page: Page) -> None:
    got = await run(
        page,
        """
        const w = new schedule.ReplayWindow();
        const seen = [];
        for (const ctr of [5, 5, 3, 200, 73, 72, 71, 199, 200]) {
          const fresh = w.fresh(ctr); seen.push(fresh); if (fresh) w.accept(ctr);
        }
        const keys = new schedule.SenderKeys();
        const found = [];
        keys.add(0, "k0", 0); keys.add(1, "k1", 1000);
        found.push(keys.add(0, "late", 1001), keys.add(1, "again", 1001));
        found.push(keys.find(0, 5999)?.material ?? null, keys.find(0, 6000)?.material ?? null,
                   keys.find(1, 9999).material, keys.find(2, 0));
        keys.add(2, "k2", 2000);
        found.push(keys.find(0, 2001), keys.find(1, 2001).material);
        // One counter for both streams, a window each: video held back by 200 audio frames
        // is not a replay; the same CTR twice on one stream is.
        const {windows} = keys.find(2, 2001);
        windows.video.accept(5);
        for (let ctr = 6; ctr < 300; ctr += 1) windows.audio.accept(ctr);
        const streams = [windows.video.fresh(7), windows.audio.fresh(7), windows.video.fresh(5)];
        const limiter = new schedule.RequestLimiter();
        const allowed = [limiter.allow("p", 0), limiter.allow("p", 999), limiter.allow("q", 999),
                         limiter.allow("p", 1000)];
        const send = new schedule.SendSchedule("me");
        const steps = [["me"], ["me", "a"], ["a", "me"], ["me", "a", "b"], ["me", "b"], ["b", "me"]]
          .map((present) => send.update(new Set(present)));
        return {seen, found, allowed, steps, streams};
        """,
    )
    # 3 is fresh (inside the window), 72 is the oldest CTR the window still holds (200 - 128).
    assert got["seen"] == [True, False, True, True, True, False, False, True, False]
    assert got["found"] == [False, False, "k0", None, "k1", None, None, "k1"]
    assert got["allowed"] == [True, False, True, True]
    assert got["streams"] == [True, False, False]
    assert [(s["rotate"], s.get("kid"), s["recipients"]) for s in got["steps"]] == [
        (True, 0, []),
        (True, 1, ["a"]),
        (False, None, ["a"]),
        (True, 2, ["a", "b"]),
        (True, 3, ["b"]),
        (False, None, ["b"]),
    ]


async def test_the_browser_and_the_python_sdk_agree(page: Page) -> None:
    """The SDK's modules (signaling/sdk/e2ee/) on the same inputs: the two clients of one
    encrypted room make and read the same bytes."""
    codec = {"video": "vp8", "audio": "opus"}
    sdk_frames = [
        sdk_sframe.encrypt_frame(codec[kind], sdk_sframe.FrameKey(BASE_KEY, kid), ctr, frame).hex()
        for kind, frame, kid, ctr in FRAME_CASES
    ]
    alice_device, bob_media, ephemeral = ed25519(7), x25519(8), x25519(9)
    sdk_blob = sdk_keyblob.seal(
        BASE_KEY,
        call_id="c2",
        sender="p1",
        recipient="p2",
        kid=4,
        recipient_media_key=raw_public(bob_media),
        signin_key=alice_device,
        ephemeral=ephemeral,
    )
    people = [(raw_public(ed25519(30 + i)), raw_public(x25519(40 + i))) for i in range(3)]
    got = await run(
        page,
        """
        const frames = [];
        for (const [i, [kind, frame, kid, ctr]] of args.cases.entries()) {
          const keys = await sframe.deriveKey(fromHex(args.base), kid);
          const mine = await sframe.encryptFrame(keys, ctr, kind, fromHex(frame));
          const theirs = await sframe.decryptFrame(
            keys, sframe.splitFrame(kind, fromHex(args.sdkFrames[i])));
          frames.push([hex(mine), hex(theirs)]);
        }
        const blob = await keyblob.sealBlob({
          baseKey: fromHex(args.base), callId: "c2", sender: "p1", recipient: "p2", kid: 4,
          recipientMediaKey: fromHex(args.bobMediaPub), signingKey: await ed(args.alice),
          ephemeral: {privateKey: await xk(args.eph), publicRaw: fromHex(args.ephPub)},
        });
        const keys = args.people.map(([d, m]) => ({deviceKey: fromHex(d), mediaKey: fromHex(m)}));
        return {frames, blob: hex(blob), safety: await safety.safetyNumber(keys)};
        """,
        {
            "cases": [[kind, frame.hex(), kid, ctr] for kind, frame, kid, ctr in FRAME_CASES],
            "base": BASE_KEY.hex(),
            "sdkFrames": sdk_frames,
            "alice": pkcs8(alice_device),
            "bobMediaPub": raw_public(bob_media).hex(),
            "eph": pkcs8(ephemeral),
            "ephPub": raw_public(ephemeral).hex(),
            "people": [[d.hex(), m.hex()] for d, m in people],
        },
    )
    for (_kind, frame, _kid, _ctr), (mine, theirs), sdk in zip(
        FRAME_CASES, got["frames"], sdk_frames, strict=True
    ):
        assert mine == sdk
        assert theirs == frame.hex()
    assert got["blob"] == sdk_blob.hex()
    opened = sdk_keyblob.open_blob(
        bytes.fromhex(got["blob"]),
        call_id="c2",
        sender="p1",
        recipient="p2",
        kid=4,
        media_key=bob_media,
        sender_device_key=raw_public(alice_device),
    )
    assert opened == BASE_KEY
    assert got["safety"] == sdk_safety.safety_number(people)
