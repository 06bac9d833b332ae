"""Safety numbers (design §7): fixed vectors for other clients, order-free, membership-bound."""

from __future__ import annotations

import hashlib
import re

import pytest

from signaling.sdk.e2ee.safety import safety_number

A = (bytes([1]) * 32, bytes([2]) * 32)
B = (bytes([3]) * 32, bytes([4]) * 32)
C = (bytes([5]) * 32, bytes([6]) * 32)


@pytest.mark.parametrize(
    ("devices", "number"),
    [
        ([A, B], "68930 35347 62934 31247 47249 48422"),
        ([B, A], "68930 35347 62934 31247 47249 48422"),
        ([A], "32418 33408 67389 02422 09710 81925"),
    ],
)
def test_vectors(devices: list[tuple[bytes, bytes]], number: str) -> None:
    assert safety_number(devices) == number


def test_the_digits_come_from_the_design_formula() -> None:
    digest = hashlib.sha256(
        b"callbook safety number v1\x00" + b"".join(sorted([A[0] + A[1], B[0] + B[1]]))
    ).digest()
    first = int.from_bytes(digest[:5], "big") % 100000
    assert safety_number([B, A]).split()[0] == f"{first:05d}"


def test_it_changes_with_membership_and_with_any_key() -> None:
    numbers = {
        safety_number([A, B]),
        safety_number([A, B, C]),
        safety_number([A, (B[0], C[1])]),
        safety_number([A, (C[0], B[1])]),
    }
    assert len(numbers) == 4
    assert all(re.fullmatch(r"\d{5}( \d{5}){5}", n) for n in numbers)
