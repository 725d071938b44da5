"""Personal data stops here (extracts.md §4).

`nik` becomes `nik_token`: SHA-256 of a secret 256-bit key followed by the NIK, its
first 128 bits kept as an unsigned 128-bit integer. The key is kept outside the
warehouse; the token is computed inside DuckDB so that it is vectorised like the rest of
the load. `full_name` is digested the same way (another key) only so that exact
duplicates can still be told apart in the staging table; it is never loaded.

Why not HMAC-SHA256, which extracts.md names first: it runs SHA-256's compression four
times per value where this runs it once (key and NIK fit one 64-byte block), and that
was a fifth of ingestion's time. The spec allows "equivalent strength": what a token
must resist is being recomputed for a guessed NIK without the key, and a secret 256-bit
prefix gives that just as HMAC does. HMAC's extra pass guards against length extension,
which only matters for authenticating messages, not for a fixed-length pseudonym.
128 bits keep collisions among 45 M people below 1e-23, and as a fixed-width integer the
token is stored, joined and counted far more cheaply than 64 hexadecimal characters.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

KEY_ENV = "PARITRANA_NIK_KEY"
MASK = "<masked>"
TOKEN_TYPE = "UHUGEINT"
_DOMAINS = {"nik": b"paritrana/nik-token/v2\0", "name": b"paritrana/name-digest/v2\0"}


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


def subkeys(key: bytes) -> dict[str, bytes]:
    """One 32-byte key per use, derived from the user's key of any length, bound to SQL
    as parameters `$nik_key` and `$name_key` so that no key appears in query text or
    error messages."""
    return {f"{use}_key": hashlib.sha256(domain + key).digest() for use, domain in _DOMAINS.items()}


def token_sql(column_sql: str) -> str:
    """SQL for the NIK token of a text value."""
    return f"('0x' || left(sha256($nik_key || encode({column_sql})), 32))::{TOKEN_TYPE}"


def name_digest_sql(column_sql: str) -> str:
    """SQL for the keyed digest of a name (compared within one file, never stored)."""
    return f"sha256($name_key || encode({column_sql}))"


def token(key: bytes, value: str) -> int:
    """The same token in Python, for tests and for looking one person up."""
    return int(hashlib.sha256(subkeys(key)["nik_key"] + value.encode()).hexdigest()[:32], 16)
