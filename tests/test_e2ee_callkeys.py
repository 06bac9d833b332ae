"""The call's key adapter: two devices' CallKeys exchange keys through what the server would
route (media_keys -> media_key), with real key material; a bad signature is ignored."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from signaling.protocol import messages as m
from signaling.sdk.e2ee.callkeys import CallKeys
from signaling.sdk.e2ee.keyblob import b64url, raw_public, sign_media_key


@dataclass
class Device:
    participant: str
    signin: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    media: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    sent: list[m.ClientMessage] = field(default_factory=list)

    def entry(self, signature: bytes | None = None) -> m.Participant:
        media = raw_public(self.media)
        return m.Participant(
            participant=self.participant,
            person=m.Person(account_id=self.participant, handle=None, display_name=None),
            device_key=b64url(raw_public(self.signin)),
            media_key=b64url(media),
            media_key_signature=b64url(signature or sign_media_key(self.signin, media)),
        )

    def keys(self) -> CallKeys:
        async def send(message: m.ClientMessage) -> None:
            self.sent.append(message)

        return CallKeys("call-1", self.participant, self.signin, self.media, send)


def routed(sender: Device, to: str) -> list[m.MediaKey]:
    """What the server delivers to ``to`` of the ``media_keys`` ``sender`` sent."""
    return [
        m.MediaKey(call_id=s.call_id, participant=sender.participant, kid=s.kid, blob=k.blob)
        for s in sender.sent
        if isinstance(s, m.MediaKeys)
        for k in s.keys
        if k.participant == to
    ]


async def test_two_devices_exchange_keys_and_see_the_same_safety_number() -> None:
    alice, bob = Device("a1"), Device("b2")
    at_alice, at_bob = alice.keys(), bob.keys()
    roster = [alice.entry(), bob.entry()]
    # Bob's key overtakes the roster that introduces him to Alice: it is held, then used.
    await at_bob.participants(roster)
    for message in routed(bob, "a1"):
        await at_alice.media_key(message)
    assert at_alice.counters["key_from_unknown_sender"] == 1
    await at_alice.participants(roster)
    for message in routed(alice, "b2"):
        await at_bob.media_key(message)
    assert at_alice.schedule.receive_key("b2", 0, 0.0) is not None
    assert at_bob.schedule.receive_key("a1", 0, 0.0) is not None
    assert at_alice.safety_number == at_bob.safety_number is not None
    await at_alice.close()
    await at_bob.close()


async def test_a_participant_whose_media_key_signature_fails_is_ignored() -> None:
    alice, bob, mallory = Device("a1"), Device("b2"), Device("c3")
    at_alice = alice.keys()
    forged = sign_media_key(Ed25519PrivateKey.generate(), raw_public(mallory.media))
    await at_alice.participants([alice.entry(), bob.entry(), mallory.entry(forged)])
    assert at_alice.counters["bad_media_key"] == 1
    assert set(at_alice.roster) == {"a1", "b2"}
    (message,) = alice.sent
    assert isinstance(message, m.MediaKeys)
    assert [k.participant for k in message.keys] == ["b2"]
    await at_alice.close()


async def test_a_blob_that_does_not_open_asks_the_sender_again() -> None:
    alice, bob = Device("a1"), Device("b2")
    at_alice = alice.keys()
    await at_alice.participants([alice.entry(), bob.entry()])
    bad = m.MediaKey(call_id="call-1", participant="b2", kid=0, blob=b64url(bytes(128)))
    await at_alice.media_key(bad)
    assert at_alice.counters["bad_blob"] == 1
    assert m.MediaKeyRequest(call_id="call-1", participant="b2") in alice.sent
    await at_alice.close()
