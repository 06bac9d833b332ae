"""The one error of the call service: a refused message, with its stable wire code."""

from __future__ import annotations


class CallError(Exception):
    def __init__(self, code: str, detail: str, call_id: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.call_id = call_id
