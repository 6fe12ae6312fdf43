"""Enrolled credentials: the node hashes them at import, the hub's identity service verifies them.
Passwords: PBKDF2-SHA256 with a per-person salt. Faces: the local face verifier compares the presented image
with the enrolled one by a keyed digest of the image bytes (a stand-in for a real matcher, same interface)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets


def hash_password(password: str, iterations: int) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt_hex, digest_hex = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def decode_face_image(face_image_b64: str) -> bytes:
    try:
        image = base64.b64decode(face_image_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("face_image_b64 is not base64") from exc
    if not image:
        raise ValueError("face image is empty")
    return image


def face_hash(key: bytes, image: bytes) -> str:
    return hmac.new(key, b"face:" + hashlib.sha256(image).digest(), hashlib.sha256).hexdigest()
