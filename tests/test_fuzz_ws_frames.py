"""Hostile WebSocket frames (below the JSON messages: headers, masks, opcodes, lengths).

The corpus in tests/data/fuzz/ws_frames/ holds raw client bytes sent right after a signed-in
upgrade, one input per file, named ``<close code>-<what>.bin``: each must close the connection
with that code and log nothing at WARNING or above. The property test drives the mask scanner with
``CALLBOOK_FUZZ_EXAMPLES`` generated frame streams (default 100); a longer run:
``CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_ws_frames.py``.
"""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.ws.masking import MaskCheck
from tests.conftest import Server
from tests.test_log_privacy import _assert_private, _assert_quiet, _close_code, _upgrade
from tests.test_log_privacy import log_lines as log_lines  # the fixture
from tests.test_ws_masking import _frame

CORPUS = Path(__file__).parent / "data" / "fuzz" / "ws_frames"
EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))


CASES = {path.name: path.read_bytes() for path in sorted(CORPUS.iterdir())}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_the_corpus_closes_with_its_code(
    server: Server, log_lines: io.StringIO, name: str
) -> None:
    code = int(name.split("-", 1)[0])
    client = await server.signup("framer")
    token = await client.token()
    reader, writer, head = await _upgrade(server.url, f"callbook.v1, bearer.{token}")
    assert head.startswith(b"HTTP/1.1 101")
    writer.write(CASES[name])
    async with asyncio.timeout(10):
        assert await _close_code(reader) == code
    writer.close()
    _assert_quiet(log_lines)
    _assert_private(log_lines, {"framer", token})


_frames = st.lists(
    st.tuples(st.integers(0, 70_000), st.booleans(), st.sampled_from([0x1, 0x2, 0x9, 0xA])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(frames=_frames, chunk=st.integers(1, 5000))
def test_the_scanner_refuses_exactly_at_the_first_unmasked_frame(
    frames: list[tuple[int, bool, int]], chunk: int
) -> None:
    stream = b""
    refuse_at = None  # the offset of the byte holding the first missing mask bit
    for size, masked, opcode in frames:
        if opcode >= 0x8:
            size = min(size, 125)
        if not masked and refuse_at is None:
            refuse_at = len(stream) + 1
        stream += _frame(b"\0" * size, masked=masked, opcode=opcode)
    check = MaskCheck()
    for start in range(0, len(stream), chunk):
        passed = check.feed(stream[start : start + chunk])
        if refuse_at is not None and start <= refuse_at < start + chunk:
            assert not passed
            return
        assert passed
    assert refuse_at is None and not check.refused
