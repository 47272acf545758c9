"""Secret values: read from the environment at plan/apply time, encrypted at rest, never shown.

Config names a secret ({fromEnv: VAR}); the value exists only in the process environment, in the
database as a Fernet token, and in memory. Comparisons and fingerprints use an HMAC of the value.

The key: CPLANE_SECRET_KEY (required in production, where it must be 32 random bytes in urlsafe
base64, a Fernet key). Elsewhere, unset, a local key is generated once at one place that does not
depend on the working directory: beside the SQLite database file (`cplane.db` → `cplane.db.key`),
or, for a server database, `$XDG_CONFIG_HOME/cplane/secret.key`. A key is known by its key id, an
HMAC of the key (never the key itself), which cplane records per database (cplane_secret_keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from control_plane.environment import is_production
from control_plane.errors import CplaneError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

SENSITIVE = "(sensitive)"
REMOVED = "(removed)"
KEY_VARIABLE = "CPLANE_SECRET_KEY"
NEW_KEY_VARIABLE = "CPLANE_NEW_SECRET_KEY"
# Where cplane before 0.x kept the local key: relative to the working directory (the bug it had).
LEGACY_KEY_FILE = Path(".cplane") / "secret.key"
GENERATE_HINT = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretKeyError(CplaneError):
    """The key is missing, malformed, or not the one the stored secrets were written with."""


def is_proper_key(material: str) -> bool:
    """32 bytes in urlsafe base64 (what Fernet.generate_key() prints), padding optional."""
    text = material.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and set(text.rstrip("=")) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def check_key_format(material: str, variable: str, environment: str | None) -> None:
    if is_production(environment) and not is_proper_key(material):
        raise SecretKeyError(
            f"{variable} is not a proper key: production needs 32 random bytes in urlsafe base64 "
            f"(a Fernet key; generate one with {GENERATE_HINT})"
        )


def local_key_file(database_url=None) -> Path:
    """Where the local development key lives: beside a SQLite database file, else in the user's
    config directory. Independent of the working directory (the path is absolute)."""
    from control_plane.db.engine import resolve_url

    try:
        url = resolve_url(str(database_url) if database_url is not None and not isinstance(database_url, str)
                          else database_url)
    except CplaneError:
        url = None
    return key_file_for(url.get_backend_name() if url is not None else None, url.database if url is not None else None)


def key_file_for(backend: str | None, database: str | None) -> Path:
    """local_key_file's rule, for a backend and database already known (the raw-driver fast path)."""
    if backend == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        db = Path(database).expanduser().resolve()
        return db.with_name(db.name + ".key")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser().resolve() / "cplane" / "secret.key"


@lru_cache(maxsize=16)
def _key_material(environment: str | None, configured: str | None = None, key_file: str | None = None) -> bytes:
    """The key's material: CPLANE_SECRET_KEY, else (outside production) the local key file."""
    existing = existing_key_material(environment, configured, key_file)
    if existing is not None:
        return existing
    if is_production(environment):
        raise SecretKeyError(f"{KEY_VARIABLE} is not set; it is required in production to encrypt secrets at rest")
    path = Path(key_file) if key_file else local_key_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    legacy = LEGACY_KEY_FILE.resolve()
    if legacy.exists() and legacy != path:
        key = legacy.read_bytes().strip()
        how = f"copied the local key from {legacy} to {path}"
    else:
        key = base64.urlsafe_b64encode(os.urandom(32))
        how = f"generated a local key in {path}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    print(f"warning: {KEY_VARIABLE} is not set; {how} (set {KEY_VARIABLE} outside development)", file=sys.stderr)
    return key


def existing_key_material(environment: str | None, configured: str | None, key_file: str | None) -> bytes | None:
    """The key's material when it exists already (CPLANE_SECRET_KEY, else outside production the
    local key file); None when _key_material would have to make one (or refuse)."""
    if configured:
        check_key_format(configured, KEY_VARIABLE, environment)
        return configured.encode()
    if is_production(environment):
        return None
    path = Path(key_file) if key_file else local_key_file()
    return path.read_bytes().strip() if path.exists() else None


def _fernet(material: bytes) -> Fernet:
    # Any material is hashed into the Fernet key, so that keys written by earlier versions keep working.
    # (cryptography is imported when a secret is encrypted or decrypted: the fast path needs only HMACs.)
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material).digest()))


def key_id_of(material: bytes) -> str:
    """The key's public identity: an HMAC of the key, enough to tell two keys apart, never the key."""
    return hmac.new(hashlib.sha256(material).digest(), b"cplane key id v1", hashlib.sha256).hexdigest()[:16]


class SecretBox:
    def __init__(self, environment: str | None = None, database_url=None, *, material: bytes | None = None):
        """The key of this process: `material` when given, else CPLANE_SECRET_KEY, else the local key
        of the database at `database_url` (default: the database this process would use)."""
        if material is None:
            configured = os.environ.get(KEY_VARIABLE) or None
            key_file = None if configured else str(local_key_file(database_url))
            material = _key_material(environment, configured, key_file)
        self._material = material
        self._fernet_instance: Fernet | None = None
        self._mac_key = hashlib.sha256(b"cplane-fingerprint:" + material).digest()
        self.key_id = key_id_of(material)

    @property
    def _fernet(self) -> Fernet:
        if self._fernet_instance is None:
            self._fernet_instance = _fernet(self._material)
        return self._fernet_instance

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def try_decrypt(self, token: str) -> str:
        """The value; InvalidToken when this key cannot read the token."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError, TypeError, AttributeError):
            raise InvalidToken from None

    def decrypt(self, token: str) -> str | None:
        """None when the token cannot be read (another key)."""
        from cryptography.fernet import InvalidToken

        try:
            return self.try_decrypt(token)
        except InvalidToken:
            return None

    def can_read(self, token) -> bool:
        return isinstance(token, str) and self.decrypt(token) is not None

    def digest(self, value: str) -> str:
        return "hmac:" + hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()[:32]


def new_key_box(environment: str | None) -> SecretBox:
    """The key `cplane secrets rotate-key` moves to (CPLANE_NEW_SECRET_KEY)."""
    material = os.environ.get(NEW_KEY_VARIABLE) or ""
    if not material:
        raise SecretKeyError(f"{NEW_KEY_VARIABLE} is not set; set it to the new key (generate one with {GENERATE_HINT})")
    check_key_format(material, NEW_KEY_VARIABLE, environment)
    return SecretBox(environment, material=material.encode())


class Rotation:
    """Reads with the old or the new key, writes with the new one (cryptography's MultiFernet)."""

    def __init__(self, old: SecretBox, new: SecretBox):
        from cryptography.fernet import MultiFernet

        self.old, self.new = old, new
        self._multi = MultiFernet([new._fernet, old._fernet])

    def rotate(self, token: str) -> str:
        """The token re-encrypted with the new key; InvalidToken when neither key reads it."""
        from cryptography.fernet import InvalidToken

        if not isinstance(token, str):
            raise InvalidToken
        if self.new.can_read(token):
            # Already under the new key (a rotation retried): re-encrypting would change nothing.
            return token
        return self._multi.rotate(token.encode()).decode()


def mask(value: str | None) -> str:
    """For API answers: enough to recognise a key, never enough to use it."""
    if not value:
        return ""
    return ("*" * 8) + value[-4:] if len(value) >= 12 else "*" * 8
