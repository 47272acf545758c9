"""Secret values: read from the environment at plan/apply time, encrypted at rest, never shown.

Config names a secret ({fromEnv: VAR}); the value exists only in the process environment, in the
database as a Fernet token, and in memory. Comparisons and fingerprints use an HMAC of the value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from control_plane.environment import is_production
from control_plane.errors import CplaneError

SENSITIVE = "(sensitive)"
LOCAL_KEY_FILE = Path(".cplane") / "secret.key"


@lru_cache(maxsize=4)
def _key_material(environment: str | None) -> bytes:
    configured = os.environ.get("CPLANE_SECRET_KEY")
    if configured:
        return configured.encode()
    if is_production(environment):
        raise CplaneError("CPLANE_SECRET_KEY is not set; it is required in production to encrypt secrets at rest")
    if LOCAL_KEY_FILE.exists():
        return LOCAL_KEY_FILE.read_bytes().strip()
    LOCAL_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(os.urandom(32))
    LOCAL_KEY_FILE.write_bytes(key + b"\n")
    LOCAL_KEY_FILE.chmod(0o600)
    print(
        f"warning: CPLANE_SECRET_KEY is not set; generated a local key in {LOCAL_KEY_FILE} (set it outside development)",
        file=sys.stderr,
    )
    return key


class SecretBox:
    def __init__(self, environment: str | None = None):
        material = _key_material(environment)
        digest = hashlib.sha256(material).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._mac_key = hashlib.sha256(b"cplane-fingerprint:" + material).digest()

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        """None when the token cannot be read (another key): the value then counts as changed."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None

    def digest(self, value: str) -> str:
        return "hmac:" + hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()[:32]


def mask(value: str | None) -> str:
    """For API answers: enough to recognise a key, never enough to use it."""
    if not value:
        return ""
    return ("*" * 8) + value[-4:] if len(value) >= 12 else "*" * 8
