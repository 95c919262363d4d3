"""What the previous release wrote that this one no longer computes, for upgrade tests."""

from __future__ import annotations

import hashlib
from typing import Iterable


def old_release_digest(blobs: Iterable[bytes]) -> bytes:
    """The chained BLAKE2b of the stored messages the previous release kept (now an opaque token to the library)."""
    digest = bytes(16)
    for blob in blobs:
        digest = hashlib.blake2b(digest + blob, digest_size=16).digest()
    return digest
