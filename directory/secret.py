"""The deployment secret: one value every node of a deployment shares and the store never holds.

It keys the handle digests (so the store's key names cannot be checked against guessed handles)
and seals the token signing keys at rest (so read access to the store does not let anyone mint
tokens). Each use gets its own subkey, derived with HKDF, so no two uses share a key.

The embedded store's deployment generates it as ``secret`` in the data directory (mode 0600) on
first start and refuses a file others may read; a deployment on an external store is given it
(``CALLBOOK_SECRET_FILE`` or ``CALLBOOK_SECRET``, docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: The generated secret's file name in the embedded store's data directory.
FILE_NAME = "secret"
#: The shortest secret accepted, in characters: 32 random hex digits carry 128 bits.
MIN_LENGTH = 32
_NONCE_BYTES = 12


class SecretError(ValueError):
    """The deployment secret is missing, too short or readable by others; the text says how to
    fix it and never holds the secret."""


@dataclass(frozen=True, slots=True)
class DeploymentSecret:
    """The subkeys derived from the deployment secret; the secret itself is not kept."""

    digest_key: bytes = field(repr=False)
    sealing_key: bytes = field(repr=False)

    @classmethod
    def from_text(cls, text: str, where: str) -> DeploymentSecret:
        value = text.strip()
        if len(value) < MIN_LENGTH:
            raise SecretError(
                f"{where}: the deployment secret has {len(value)} characters; it needs at least "
                f"{MIN_LENGTH} (e.g. `openssl rand -hex 32`)."
            )
        root = value.encode()
        return cls(digest_key=_subkey(root, "digest"), sealing_key=_subkey(root, "keyring"))

    def digest(self, data: str) -> str:
        """A keyed digest (HMAC-SHA256, 128 bits in hex) of a datum that names a person."""
        return hmac.new(self.digest_key, data.encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, plaintext: bytes, label: str) -> bytes:
        """AES-256-GCM under the signing-key subkey; ``label`` (the key id) is bound as
        associated data, so a sealed value moved to another id does not open."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + AESGCM(self.sealing_key).encrypt(nonce, plaintext, label.encode())

    def open(self, sealed: bytes, label: str) -> bytes:
        """The plaintext; raises ``cryptography.exceptions.InvalidTag`` under another secret."""
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        return AESGCM(self.sealing_key).decrypt(nonce, body, label.encode())


def _subkey(root: bytes, purpose: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"callbook/" + purpose.encode()
    )
    return hkdf.derive(root)


def read_file(path: Path) -> DeploymentSecret:
    """The secret an operator mounted (a Kubernetes Secret, a Docker secret)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SecretError(f"CALLBOOK_SECRET_FILE: cannot read {path} ({exc.strerror}).") from exc
    return DeploymentSecret.from_text(text, "CALLBOOK_SECRET_FILE")


def embedded(data_dir: Path) -> DeploymentSecret:
    """The data directory's secret, generated with mode 0600 on first start.

    A file that others may read is refused rather than fixed: its secret may already have been
    copied, and quietly narrowing the mode would hide that from the operator.
    """
    path = data_dir / FILE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretError(
                f"{path} has mode {mode:o}: others may read the deployment secret. If nobody "
                f"did, `chmod 600 {path}` and start again."
            ) from None
        return DeploymentSecret.from_text(path.read_text(), str(path))
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return DeploymentSecret.from_text(path.read_text(), str(path))
