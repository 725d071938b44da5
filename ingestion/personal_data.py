"""Personal data stops here (extracts.md §4).

`nik` becomes `nik_token`, an HMAC-SHA256 under a secret key kept outside the
warehouse, computed inside DuckDB so that it is vectorised like the rest of the load.
`full_name` is tokenised the same way only so that exact duplicates can still be told
apart in the temporary staging table; it is never loaded.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "PARITRANA_NIK_KEY"
MASK = "<masked>"
_BLOCK = 64  # SHA-256 block size in bytes


def load_key(home: Path) -> bytes:
    """The token key: $PARITRANA_NIK_KEY if set, else a key file under HOME/secrets
    (created once, mode 0600). Never stored in the warehouse."""
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = home / "secrets" / "nik_token.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """Inner and outer padded keys of RFC 2104, so HMAC can run as two SQL sha256 calls."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def token_sql(column_sql: str) -> str:
    """SQL for HMAC-SHA256(key, value) as hex; the pads are bound as parameters
    `$ipad` and `$opad` so the key never appears in query text or error messages."""
    return f"sha256($opad || unhex(sha256($ipad || encode({column_sql}))))"


def token(key: bytes, value: str) -> str:
    """The same token in Python, for tests and for looking one person up."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
