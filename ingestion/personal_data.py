"""Personal data stops here (extracts.md §4).

`nik` becomes `nik_token`: SHA-256 of a secret 256-bit key followed by the NIK, its
first 128 bits kept as an unsigned 128-bit integer. The key is kept outside the
warehouse; the token is computed inside DuckDB so that it is vectorised like the rest of
the load. `full_name` is digested the same way (another key) only where records that may
be exact duplicates are compared (ingestion.loader); it is never loaded.

Why not HMAC-SHA256, which extracts.md names first: it runs SHA-256's compression four
times per value where this runs it once (key and NIK fit one 64-byte block), and that
was a fifth of ingestion's time. The spec allows "equivalent strength": what a token
must resist is being recomputed for a guessed NIK without the key, and a secret 256-bit
prefix gives that just as HMAC does. HMAC's extra pass guards against length extension,
which only matters for authenticating messages, not for a fixed-length pseudonym.
128 bits keep collisions among 45 M people below 1e-23, and as a fixed-width integer the
token is stored, joined and counted far more cheaply than 64 hexadecimal characters.
PARITRANA_NIK_TOKEN=hmac-sha256 chooses HMAC-SHA256 itself (see Tokeniser).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_ENV = "PARITRANA_NIK_KEY"
MASK = "<masked>"
# A NIK in a column not meant for it (claims keyed by NIK instead of kpj, a header with
# `kpj` and `nik` swapped) fails that column's pattern, and the quarantine would show it:
# so 16 digits in a row, in any column, are masked there. No contract value has as many.
NIK_SHAPED = "<masked: 16 digits, NIK-shaped>"
TOKEN_TYPE = "UHUGEINT"
SCHEME_ENV = "PARITRANA_NIK_TOKEN"
SCHEMES = ("sha256-prefix", "hmac-sha256")
DEFAULT_SCHEME = SCHEMES[0]
_DOMAINS = {"nik": b"paritrana/nik-token/v2\0", "name": b"paritrana/name-digest/v2\0",
            "check": b"paritrana/key-check/v1\0"}


# A key anyone could guess lets whoever holds the warehouse (every analyst) recompute the
# tokens of guessed NIKs, whose structure (province, birth date) narrows them to a few
# billion per province: 32 characters is 128 bits as hexadecimal. The file key made here
# has 64.
MIN_KEY_CHARS = 32


def load_key(home: Path) -> bytes:
    """The token key: $PARITRANA_NIK_KEY if set, else a key file under HOME/secrets
    (created once, mode 0600). Never stored in the warehouse; a short one is refused."""
    env = os.environ.get(KEY_ENV)
    path = home / "secrets" / "nik_token.key"
    if env:
        return _long_enough(env.strip(), f"${KEY_ENV}")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:  # as ssh refuses a private key others may read (a restore that reset modes)
        raise ValueError(f"the NIK key file {path} may be read or written by other users (mode {mode:o}): whoever "
                         f"reads it can recompute the token of a guessed NIK. Run chmod 600 {path} and run again "
                         f"(on a file system without modes, give the key in ${KEY_ENV} instead)")
    return _long_enough(path.read_text().strip(), str(path))


def _long_enough(key: str, where: str) -> bytes:
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"the NIK key in {where} has {len(key)} characters, fewer than {MIN_KEY_CHARS}: a short "
                         "key lets anyone holding the warehouse recompute the tokens of guessed NIKs. Make one with "
                         "python -c 'import secrets; print(secrets.token_hex(32))' (a warehouse already loaded "
                         "with a short key must be loaded anew into a new HOME with the new key)")
    return key.encode()


def key_check(key: bytes) -> str:
    """Which key a warehouse's tokens were made with, as 64 bits of a one-way digest under
    its own domain: enough to tell two keys apart, nothing to make a token with. (A token
    of a known NIK would already let a weak key be guessed; this adds no such help.)"""
    return hashlib.sha256(_DOMAINS["check"] + key).hexdigest()[:16]


@dataclass(frozen=True)
class Tokeniser:
    """Turns NIKs into tokens (and names into digests) in SQL, with its keys bound as
    parameters (`params`) so that no key appears in query text or error messages.

    `sha256-prefix` (the default) is described above; `hmac-sha256`
    (PARITRANA_NIK_TOKEN=hmac-sha256) is HMAC-SHA256 with the user's key as extracts.md
    names it first, four times the hashing. Both keep the first 128 bits. A warehouse
    records its scheme and refuses the other (ingestion.raw_schema)."""
    scheme: str
    params: dict[str, bytes]

    @classmethod
    def for_key(cls, key: bytes, scheme: str = DEFAULT_SCHEME) -> "Tokeniser":
        if scheme not in SCHEMES:
            raise ValueError(f"{SCHEME_ENV}={scheme!r}: expected one of {', '.join(SCHEMES)}")
        params = {"name_key": hashlib.sha256(_DOMAINS["name"] + key).digest()}
        if scheme == "hmac-sha256":
            # RFC 2104's padded keys, so HMAC runs as two SQL sha256 calls
            block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
            params["nik_ipad"] = bytes(b ^ 0x36 for b in block)
            params["nik_opad"] = bytes(b ^ 0x5C for b in block)
        else:
            params["nik_key"] = hashlib.sha256(_DOMAINS["nik"] + key).digest()
        return cls(scheme, params)

    def token_sql(self, column_sql: str) -> str:
        """SQL for the NIK token of a text value."""
        if self.scheme == "hmac-sha256":
            digest = f"sha256($nik_opad || unhex(sha256($nik_ipad || encode({column_sql}))))"
        else:
            digest = f"sha256($nik_key || encode({column_sql}))"
        return f"('0x' || left({digest}, 32))::{TOKEN_TYPE}"

    @staticmethod
    def name_digest_sql(column_sql: str) -> str:
        """SQL for the keyed digest of a name (compared within one file, never stored)."""
        return f"sha256($name_key || encode({column_sql}))"

    def token(self, value: str) -> int:
        """The same token in Python, for tests and for looking one person up."""
        if self.scheme == "hmac-sha256":
            inner = hashlib.sha256(self.params["nik_ipad"] + value.encode()).digest()
            digest = hashlib.sha256(self.params["nik_opad"] + inner).hexdigest()
        else:
            digest = hashlib.sha256(self.params["nik_key"] + value.encode()).hexdigest()
        return int(digest[:32], 16)


def token_scheme() -> str:
    """The scheme asked for: $PARITRANA_NIK_TOKEN, else the default."""
    return os.environ.get(SCHEME_ENV) or DEFAULT_SCHEME


def token(key: bytes, value: str, scheme: str = DEFAULT_SCHEME) -> int:
    return Tokeniser.for_key(key, scheme).token(value)


def mask_nik_shaped(text_sql: str) -> str:
    """SQL for a quarantined value's delivered text, NIK-shaped runs of digits masked."""
    return (f"case when length({text_sql}) >= 16 and regexp_matches({text_sql}, '[0-9]{{16}}') then '{NIK_SHAPED}' "
            f"else {text_sql} end")


def token_text_sql(x: str) -> str:
    """SQL for a token's decimal digits, what `cast(x as varchar)` gives. DuckDB's own cast
    of a UHUGEINT to text takes about 15 µs a value (31 s for 2 M on two cores), and so does
    each 128-bit unsigned division: the quarantine of a 5 M-row file whose every row failed
    took 108 s where its sound twin loaded in 6 s, and the PostgreSQL copy of 2.6 M tokens
    42 s. Here one signed division (five times cheaper) of x >> 1 by 10^19, comparisons and
    64-bit casts give the three 19-digit parts: 0.9 s for 2 M. Each intermediate value is a
    lambda's parameter over a one-element list, which DuckDB computes once, where a plain
    expression would repeat it in every place it is used."""
    d = "10000000000000000000::hugeint"
    # x = 2h + b; h = 10^19 hq + hr; t = 2 hr + b = 10^19 k + r; x = 10^19 q + r with q = 2 hq + k,
    # and q (below 3.5 * 10^19) = 10^19 m + its low part.
    digits = (f"cast(m as varchar) || lpad(cast(cast(q - m * {d} as ubigint) as varchar), 19, '0') "
              f"|| lpad(cast(cast(t - k * {d} as ubigint) as varchar), 19, '0')")
    steps = [("h", f"(({x}) >> 1)::hugeint"), ("hq", f"h // {d}"), ("b", f"(({x}) & 1)::hugeint"),
             ("t", f"2 * (h - hq * {d}) + b"), ("k", f"case when t >= 2 * {d} then 2 when t >= {d} then 1 else 0 end"),
             ("q", "2 * hq + k"),
             ("m", f"case when q >= 3 * {d} then 3 when q >= 2 * {d} then 2 when q >= {d} then 1 else 0 end")]
    expr = digits
    for name, value in reversed(steps):
        expr = f"list_transform([{value}], lambda {name}: {expr})[1]"
    return f"case when ({x}) = 0 then '0' else ltrim({expr}, '0') end"
