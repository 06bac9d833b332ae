"""Fuzzing the puzzle checker: whatever a client sends as a challenge and a solution, the answer
is a verdict (a problem sentence or a pass), never an exception; hostile inputs kept in
tests/data/fuzz/puzzle/ are replayed every run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling import puzzle

KEY = b"k" * 32
CORPUS = Path(__file__).parent / "data" / "fuzz" / "puzzle"
EXAMPLES = int(os.environ.get("CALLBOOK_FUZZ_EXAMPLES", "100"))


def _check(challenge: str, solution: str) -> puzzle.Verdict:
    return puzzle.check(KEY, challenge, solution, "signup", "-", 0.0)


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_hostile_challenges_from_the_corpus_get_a_problem(path: Path) -> None:
    challenge = path.read_bytes().decode("utf-8", errors="surrogateescape")
    assert _check(challenge, "0").problem is not None


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=256), st.text(max_size=40))
def test_any_text_gets_a_verdict(challenge: str, solution: str) -> None:
    assert _check(challenge, solution).problem is not None


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(max_size=40))
def test_any_solution_of_a_real_challenge_gets_a_verdict(solution: str) -> None:
    challenge = puzzle.issue(KEY, "signup", 30, "-", expires_at=10)
    assert _check(challenge, solution).problem == "The puzzle's solution is wrong."


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_characters="."), max_size=12),
                min_size=7, max_size=7))  # fmt: skip
def test_any_seven_fields_get_a_verdict(fields: list[str]) -> None:
    assert _check(".".join(["p1", *fields[1:]]), "0").problem is not None
