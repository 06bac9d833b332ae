"""Errors the address book raises; each carries a stable machine-readable code."""

from __future__ import annotations


class DirectoryError(Exception):
    """Base class: ``code`` is stable and part of the public protocol."""

    code = "directory_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidHandle(DirectoryError):
    code = "invalid_handle"


class ReservedHandle(DirectoryError):
    code = "handle_reserved"


class HandleTaken(DirectoryError):
    """The handle is owned by someone else or quarantined after release."""

    code = "handle_taken"


class NotFound(DirectoryError):
    """Unknown, erased, undiscoverable and blocked targets all raise this, identically."""

    code = "not_found"


class InvalidKey(DirectoryError):
    code = "invalid_public_key"


class InvalidMediaKey(DirectoryError):
    """A device media key that is not 32 bytes of X25519, or whose signature does not verify."""

    code = "invalid_media_key"


class TooManyDevices(DirectoryError):
    code = "too_many_devices"


class UnknownDevice(DirectoryError):
    code = "unknown_device"


class BadSignature(DirectoryError):
    code = "bad_signature"


class BadChallenge(DirectoryError):
    """The nonce is unknown, expired or already used."""

    code = "bad_challenge"


class BadRecoveryCode(DirectoryError):
    code = "bad_recovery_code"


class InvalidValue(DirectoryError):
    code = "invalid_value"


class RateLimited(DirectoryError):
    code = "rate_limited"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Overloaded(DirectoryError):
    """Too much expensive work (argon2) is already waiting: refused now rather than queued."""

    code = "overloaded"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class PuzzleRequired(DirectoryError):
    """Recovery of a handle under a flood of guesses needs the heaviest puzzle first."""

    code = "puzzle_required"


class AlreadyDecided(DirectoryError):
    """An abuse report was decided already; a decision is final."""

    code = "already_decided"
