"""Key blobs (design §4) and media key signatures (design §1): a fixed vector the browser's
worker must reproduce byte for byte, and every way a blob can fail to open."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from signaling.sdk.e2ee.keyblob import (
    BlobError,
    b64url,
    context,
    media_key_signed,
    open_blob,
    raw_public,
    seal,
    sign_media_key,
)

SIGNIN = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
RECIPIENT = X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
BASE_KEY = bytes(range(100, 116))
WHO = {"call_id": "call-1", "sender": "p-alice", "recipient": "p-bob", "kid": 7}

#: Also in docs/e2ee-sdk.md, for other clients' tests.
VECTOR = {
    "signin_public": "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "recipient_media_public": "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254",
    "blob": "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a"
    "106d6cc39489d3a07385a7a5ab0713ed27ece2c7c9fe8b071491f092210f007b"
    "ca9172784b0170d9214557b7882ebef4114b7b1a407e7c5731bf5c0094a1a30f"
    "40f77810b86b024840d4a6bf74d7b26db33fb5dc8f7ebded4018ff9d9a748208",
}


def test_the_fixed_vector() -> None:
    assert raw_public(SIGNIN).hex() == VECTOR["signin_public"]
    assert raw_public(RECIPIENT).hex() == VECTOR["recipient_media_public"]
    blob = seal(
        BASE_KEY, **WHO, recipient_media_key=raw_public(RECIPIENT), signin_key=SIGNIN,
        ephemeral=EPHEMERAL,
    )  # fmt: skip
    assert blob.hex() == VECTOR["blob"]
    assert len(b64url(blob)) <= 256
    assert context("call-1", "p-alice", "p-bob", 7) == (
        b"callbook media key v1\x00call-1\x00p-alice\x00p-bob\x00" + bytes(7) + b"\x07"
    )


def test_a_fresh_blob_opens_for_its_recipient() -> None:
    blob = seal(BASE_KEY, **WHO, recipient_media_key=raw_public(RECIPIENT), signin_key=SIGNIN)
    assert len(blob) == 128
    opened = open_blob(
        blob, **WHO, media_key=RECIPIENT, sender_device_key=raw_public(SIGNIN)
    )  # fmt: skip
    assert opened == BASE_KEY


OTHER_SIGNIN = Ed25519PrivateKey.generate()
OTHER_MEDIA = X25519PrivateKey.generate()


@pytest.mark.parametrize(
    ("name", "blob_change", "who_change", "media_key", "sender_key"),
    [
        ("another call", None, {"call_id": "call-2"}, RECIPIENT, SIGNIN),
        ("another sender", None, {"sender": "p-mallory"}, RECIPIENT, SIGNIN),
        ("another recipient", None, {"recipient": "p-carol"}, RECIPIENT, SIGNIN),
        ("another kid", None, {"kid": 8}, RECIPIENT, SIGNIN),
        ("not our media key", None, {}, OTHER_MEDIA, SIGNIN),
        ("signed by someone else", None, {}, RECIPIENT, OTHER_SIGNIN),
        ("truncated", lambda b: b[:-1], {}, RECIPIENT, SIGNIN),
        ("too long", lambda b: b + b"\x00", {}, RECIPIENT, SIGNIN),
        (
            "sealed part flipped",
            lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],
            {},
            RECIPIENT,
            SIGNIN,
        ),
        ("ephemeral key flipped", lambda b: bytes([b[0] ^ 1]) + b[1:], {}, RECIPIENT, SIGNIN),
        ("empty", lambda b: b"", {}, RECIPIENT, SIGNIN),
    ],
)
def test_a_blob_that_does_not_open(
    name: str,
    blob_change: object,
    who_change: dict[str, object],
    media_key: X25519PrivateKey,
    sender_key: Ed25519PrivateKey,
) -> None:
    blob = seal(BASE_KEY, **WHO, recipient_media_key=raw_public(RECIPIENT), signin_key=SIGNIN)
    if blob_change is not None:
        blob = blob_change(blob)  # type: ignore[operator]
    who = {**WHO, **who_change}
    with pytest.raises(BlobError):
        open_blob(
            blob,
            media_key=media_key,
            sender_device_key=raw_public(sender_key),
            **who,  # type: ignore[arg-type]
        )


def test_media_key_signatures() -> None:
    media = raw_public(RECIPIENT)
    signature = sign_media_key(SIGNIN, media)
    assert media_key_signed(raw_public(SIGNIN), media, signature)
    assert not media_key_signed(raw_public(OTHER_SIGNIN), media, signature)
    assert not media_key_signed(raw_public(SIGNIN), raw_public(OTHER_MEDIA), signature)
    assert not media_key_signed(raw_public(SIGNIN), media, signature[:-1])
    assert not media_key_signed(b"short", media, signature)
