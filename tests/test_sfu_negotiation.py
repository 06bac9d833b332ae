"""The offer/answer bookkeeping of a bundled connection (media/bundle.py ``Negotiation``): one
offer outstanding at a time, and no change lost — also one made while an offer is being made
(``Bundle.offer`` awaits aiortc between ``begin`` and ``issue``)."""

from __future__ import annotations

import pytest

from media import errors
from media.bundle import Negotiation, rtcp_media_ssrcs
from media.rtp import build_pli, build_remb


def test_a_change_makes_an_offer_due_and_its_answer_settles_it() -> None:
    n = Negotiation()
    assert not n.due()
    n.changed()
    assert n.due()
    n.begin()
    offer = n.issue("sdp-1", ())
    assert offer.revision == 1 and not n.due()
    assert n.check(1) is offer
    n.answered()
    assert not n.due() and n.outstanding is None


def test_changes_while_an_offer_is_outstanding_are_due_once_it_is_answered() -> None:
    n = Negotiation()
    n.changed()
    n.begin()
    n.issue("sdp-1", ())
    n.changed()
    n.changed()
    assert not n.due()  # at most one offer outstanding
    n.answered()
    assert n.due()
    n.begin()
    assert n.issue("sdp-2", ()).revision == 2


def test_a_change_made_while_the_offer_is_being_made_is_not_lost() -> None:
    n = Negotiation()
    n.changed()
    n.begin()
    n.changed()  # a subscription added during createOffer: not in this offer
    n.issue("sdp-1", ())
    n.answered()
    assert n.due()


@pytest.mark.parametrize("revision", [0, 2, 7])
def test_an_answer_to_another_revision_is_stale(revision: int) -> None:
    n = Negotiation()
    with pytest.raises(errors.StaleOffer):
        n.check(1)  # nothing outstanding
    n.changed()
    n.begin()
    n.issue("sdp-1", ())
    with pytest.raises(errors.StaleOffer):
        n.check(revision)


def test_a_remb_on_one_connection_reaches_every_stream_it_names() -> None:
    """Chromium sends one REMB per transport naming all it receives: with one connection per
    participant it is each named subscription's estimate (simulcast layer choice)."""
    assert rtcp_media_ssrcs(build_remb(1, 300_000, [11, 22])) == [11, 22]
    assert rtcp_media_ssrcs(build_pli(1, 33)) == [33]
    assert rtcp_media_ssrcs(b"\x80\xce") == []
