"""Fuzzing what APNs and FCM answer: any status and body gives a verdict, never an exception; a
registration is removed only on the statuses the providers document for dead tokens; a reason
goes into a log line only when it is a plain code.

The corpus in tests/data/fuzz/push_answers/ (``<provider>-<status>-<what>.bin``, one body a
file) is replayed on every run; hypothesis adds ``CALLBOOK_FUZZ_EXAMPLES`` answers (default 100):

    CALLBOOK_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_push_answers.py
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.push import apns, fcm
from signaling.push.dispatch import Verdict, printable_reason
from tests.fuzz_server import corpus, fuzz
from tests.test_fuzz_rest import json_values

CLASSIFY: dict[str, Callable[[int, bytes], tuple[Verdict, str]]] = {
    "apns": apns.classify,
    "fcm": fcm.classify,
}
#: The only statuses at which a provider may tell us a token is dead.
GONE_STATUSES = {"apns": {400, 410}, "fcm": {400, 404}}
_PLAIN = re.compile(r"[A-Za-z_]{1,64}|-")


def _check(provider: str, status: int, body: bytes) -> None:
    verdict, reason = CLASSIFY[provider](status, body)
    assert isinstance(verdict, Verdict)
    if status == 200:
        assert verdict is Verdict.DELIVERED
    if verdict is Verdict.GONE:
        assert status in GONE_STATUSES[provider]
    assert _PLAIN.fullmatch(printable_reason(reason))


@pytest.mark.parametrize("path", corpus("push_answers"))
def test_corpus(path: Path) -> None:
    provider, status, _ = path.name.split("-", 2)
    _check(provider, int(status), path.read_bytes())


statuses = st.one_of(st.sampled_from([200, 400, 401, 403, 404, 410, 429, 500, 503]),
                     st.integers(100, 599))  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"reason": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"error": st.fixed_dictionaries({"status": json_values, "details": json_values})}
    ).map(lambda v: json.dumps(v).encode()),
)


@fuzz
@given(provider=st.sampled_from(sorted(CLASSIFY)), status=statuses, body=bodies)
def test_any_answer_has_a_verdict(provider: str, status: int, body: bytes) -> None:
    _check(provider, status, body)
