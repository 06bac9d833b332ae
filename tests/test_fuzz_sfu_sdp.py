"""The SFU's SDP intake under fuzzing: a publisher's offer, however mangled, is answered or refused
with ``InvalidSdp`` (the control API's typed 422), never another exception (a 500).

Offers start from a real aiortc offer (audio and video, RTX groups, header extensions) whose
lines are dropped, repeated, swapped or given hostile values, so that mutations reach aiortc's
parser, its negotiation and our reading of the answer (``published_streams``). The corpus in
``tests/data/fuzz/sfu_sdp/`` (one offer a file) is replayed. A longer run:
``CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_sfu_sdp.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import errors
from media.node import MediaNode

CORPUS_DIR = Path(__file__).parent / "data" / "fuzz" / "sfu_sdp"
CORPUS = sorted((p.name, p.read_text()) for p in CORPUS_DIR.iterdir())
EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOSTILE_VALUES = [
    "", "x", "-1", "0", "4294967296", "99999999999999999999", "1 2 3", "\x00", "é", ":" * 40,
    "a" * 2000, "FID", "96", "127", "128",
]  # fmt: skip


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for the module: hypothesis drives plain functions, each example runs on it."""
    loop = asyncio.new_event_loop()
    yield loop
    # aiortc leaves a connecting task behind each answered offer: end them before the loop.
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    # Only with tasks: gather() of nothing would take the thread's loop, not this one (whether
    # one is left depends on how far aiortc got, which a loaded machine changes).
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


@pytest.fixture(scope="module")
def offer(loop: asyncio.AbstractEventLoop) -> list[str]:
    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        await pc.close()
        return sdp

    return loop.run_until_complete(make()).split("\r\n")


def check_offer(loop: asyncio.AbstractEventLoop, text: str) -> None:
    """A join with this offer, on the node's own path (what the control API's handler runs)."""

    async def attempt() -> None:
        node = MediaNode()
        node.create_room("r")
        try:
            await node.join("r", "p", text)
        except errors.InvalidSdp:
            pass
        finally:
            await node.close()

    loop.run_until_complete(attempt())


@st.composite
def mangled(draw: st.DrawFn, lines: list[str]) -> str:
    out = list(lines)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "swap", "value", "field"]))
        if action == "drop":
            del out[i]
        elif action == "repeat":
            out.insert(i, out[i])
        elif action == "swap":
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        else:
            key, sep, rest = out[i].partition(":" if out[i].startswith("a=") else "=")
            fields = rest.split(" ")
            k = draw(st.integers(0, len(fields) - 1))
            value = draw(st.sampled_from(HOSTILE_VALUES) | st.text(max_size=12))
            if action == "value":
                fields[k] = value
            else:
                fields.insert(k, value)
            out[i] = key + sep + " ".join(fields)
        if not out:
            break
    return "\r\n".join(out)


@fuzz
@given(st.data())
def test_a_mangled_offer_is_answered_or_refused_as_invalid_sdp(
    loop: asyncio.AbstractEventLoop, offer: list[str], data: st.DataObject
) -> None:
    check_offer(loop, data.draw(mangled(offer)))


@pytest.mark.parametrize(("name", "text"), CORPUS, ids=[name for name, _ in CORPUS])
def test_corpus(loop: asyncio.AbstractEventLoop, name: str, text: str) -> None:
    check_offer(loop, text)
