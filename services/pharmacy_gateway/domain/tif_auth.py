"""The national gateway's request signature (the `x-tif-*` headers), as pharmacy software computes it:
signature = lowercase hex SHA-256(timestamp + paas_token + nonce + timestamp), timestamp in unix seconds within
±window of the receiver's clock, nonce never repeated by the same paasid within the window. Pure."""

from __future__ import annotations

import hashlib
import hmac
import re

HEADER_PAASID = "x-tif-paasid"
HEADER_TIMESTAMP = "x-tif-timestamp"
HEADER_NONCE = "x-tif-nonce"
HEADER_SIGNATURE = "x-tif-signature"

_TIMESTAMP_SHAPE = re.compile(r"^[0-9]{1,12}$", re.ASCII)
_NONCE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{8,64}$", re.ASCII)
_SIGNATURE_SHAPE = re.compile(r"^[0-9a-f]{64}$", re.ASCII)


class SignatureRefused(ValueError):
    """Why a request's x-tif headers are not acceptable (the text becomes the 401's err_msg)."""


def tif_signature(timestamp: str, paas_token: str, nonce: str) -> str:
    return hashlib.sha256(f"{timestamp}{paas_token}{nonce}{timestamp}".encode()).hexdigest()


def paas_token_for(key: bytes, paas_id: str) -> str:
    """The institution's paas_token, derived from a gateway key and its paas_id. The signature scheme needs the
    token itself on the receiving side, so instead of keeping every token (a hash could not verify anything) the
    gateway re-derives it; rotating an institution's paas_id rotates its token."""
    return hmac.new(key, b"paas-token:" + paas_id.encode(), hashlib.sha256).hexdigest()


def check_headers(timestamp: str | None, nonce: str | None, signature: str | None, *, paas_token: str,
                  now_s: float, window_s: int) -> int:
    """Verify shape, freshness and signature; returns the timestamp. The nonce's uniqueness is the caller's
    (it needs storage)."""
    if not timestamp or not nonce or not signature:
        raise SignatureRefused("x-tif-timestamp, x-tif-nonce and x-tif-signature are required")
    if not _TIMESTAMP_SHAPE.match(timestamp):
        raise SignatureRefused("x-tif-timestamp must be unix seconds")
    if abs(now_s - int(timestamp)) > window_s:
        raise SignatureRefused(f"x-tif-timestamp is more than {window_s} s away from the gateway's clock")
    if not _NONCE_SHAPE.match(nonce):
        raise SignatureRefused("x-tif-nonce must be 8 to 64 letters, digits, '-' or '_'")
    expected = tif_signature(timestamp, paas_token, nonce)
    # Constant time: the comparison must not tell a forger how many leading characters were right.
    if not _SIGNATURE_SHAPE.match(signature) or not hmac.compare_digest(expected, signature):
        raise SignatureRefused("x-tif-signature does not match")
    return int(timestamp)
