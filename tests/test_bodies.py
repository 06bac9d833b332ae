"""``signaling.rest.bodies.inflate``: the content codings, the limit to the byte, and every
way a compressed body can be broken, as typed problems."""

from __future__ import annotations

import gzip
import zlib

import pytest

from signaling.errors import ApiError
from signaling.rest.bodies import inflate

LIMIT = 1000
EXACT = b"x" * LIMIT
OVER = b"x" * (LIMIT + 1)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("coding", "raw", "plain"),
    [
        ("", b"{}", b"{}"),
        ("identity", b"{}", b"{}"),
        ("gzip", gzip.compress(EXACT), EXACT),
        ("x-gzip", gzip.compress(b"{}"), b"{}"),
        (" GZIP ", gzip.compress(b"{}"), b"{}"),
        ("deflate", zlib.compress(EXACT), EXACT),
        ("deflate", _raw_deflate(b"{}"), b"{}"),
        ("gzip", gzip.compress(b"{") + gzip.compress(b"}"), b"{}"),  # two members
        ("gzip", b"", b""),
    ],
    ids=["none", "identity", "gzip_at_the_limit", "x_gzip", "case_and_space",
         "deflate_at_the_limit", "raw_deflate", "gzip_members", "empty"],
)  # fmt: skip
def test_decodes(coding: str, raw: bytes, plain: bytes) -> None:
    assert inflate(raw, coding, LIMIT) == plain


@pytest.mark.parametrize(
    ("coding", "raw", "code"),
    [
        ("gzip", gzip.compress(OVER), "payload_too_large"),
        ("deflate", zlib.compress(OVER), "payload_too_large"),
        ("gzip", gzip.compress(EXACT) + gzip.compress(b"x"), "payload_too_large"),
        ("gzip", gzip.compress(b" " * 10_000_000), "payload_too_large"),
        ("gzip", b"not gzip", "malformed_body"),
        ("deflate", b"not deflate", "malformed_body"),
        ("gzip", gzip.compress(b"{}")[:-4], "malformed_body"),
        ("deflate", zlib.compress(b"{}")[:-2], "malformed_body"),
        ("gzip", gzip.compress(b"{}") + b"junk", "malformed_body"),
        ("br", b"\x1b", "unsupported_encoding"),
        ("zstd", b"", "unsupported_encoding"),
        ("gzip, gzip", gzip.compress(gzip.compress(b"{}")), "unsupported_encoding"),
        ("compress", b"", "unsupported_encoding"),
    ],
    ids=["gzip_one_over", "deflate_one_over", "members_one_over", "bomb", "gzip_garbage",
         "deflate_garbage", "gzip_truncated", "deflate_truncated", "gzip_trailing_junk", "br",
         "zstd", "stacked", "compress"],
)  # fmt: skip
def test_refuses(coding: str, raw: bytes, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        inflate(raw, coding, LIMIT)
    assert refused.value.problem_type.code == code
    if code == "unsupported_encoding":
        assert refused.value.headers == {"Accept-Encoding": "gzip, deflate"}
