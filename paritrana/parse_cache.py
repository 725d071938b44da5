"""dbt's saved parse, shared by the homes of one machine.

A home's first dbt run parses the whole project (4–6 s on a 2-core machine); the runs after
it reuse the parse dbt saved in HOME/dbt/target/partial_parse.msgpack. A home made anew (a
rebuild from the landing, a second home for a trial year, each test of the suite) starts
instead from the parse another home saved of the very same project: the cache is keyed by
dbt's version, the project's folder and the bytes of every file in it, the --vars and the
environment the profile reads. dbt checks a seed again anyway (version, vars, profile,
every file's hash) before it trusts it, and parses in full when anything differs, so a
seed can cost a parse, never a wrong build.

Where: $PARITRANA_CACHE, else $XDG_CACHE_HOME/paritrana, else ~/.cache/paritrana;
PARITRANA_CACHE=off turns it off. A cache that cannot be read or written is left alone
(the run parses in full, as without it).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

SAVED = "partial_parse.msgpack"
KEEP = 6  # seeds kept, the most recently used: one per project version and configuration in use, about 1 MB each
_NOT_THE_PROJECT = {"target", "logs", "dbt_packages", "__pycache__"}


def hash_files(digest, root: Path, files, read: Callable[[Path], bytes] = Path.read_bytes) -> None:
    """Each file's name under root, length and bytes (as `read` gives them) into digest:
    the same files, the same digest, whatever their times (also transform.models_fingerprint's)."""
    for f in files:
        content = read(f)
        digest.update(f"{f.relative_to(root).as_posix()}\0{len(content)}\0".encode())
        digest.update(content)


def cache_dir() -> Path | None:
    chosen = os.environ.get("PARITRANA_CACHE", "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paritrana"


def key(project: Path, vars_json: str) -> str | None:
    """What a saved parse depends on: dbt's version, the project (where and every byte),
    the --vars and the values of the environment variables its profile reads. None when
    the cache is off: nothing to key, and no file hashed."""
    if cache_dir() is None:
        return None
    from dbt.version import __version__

    digest = hashlib.sha256(f"{__version__}\0{project.resolve()}\0{vars_json}\0".encode())
    hash_files(digest, project, (f for f in sorted(project.rglob("*"))
                                 if f.is_file() and not _NOT_THE_PROJECT & set(f.relative_to(project).parts)))
    profile = project / "profiles.yml"
    names = sorted(set(re.findall(r"env_var\(\s*['\"]([A-Za-z0-9_]+)['\"]", profile.read_text()))) \
        if profile.is_file() else []
    for name in names:
        digest.update(f"{name}={os.environ.get(name)}\0".encode())
    return digest.hexdigest()


def seed(target: Path, key: str | None) -> bool:
    """Give a home with no saved parse the cached one of this project; True when it did.
    (No key: the cache is off.)"""
    folder = cache_dir()
    cached = folder / f"{key}.msgpack" if folder and key else None
    if cached is None or (target / SAVED).exists() or not cached.is_file():
        return False
    with contextlib.suppress(OSError):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, target / SAVED)
        _used(cached)
        return True
    return False


def _used(seed_file: Path) -> None:
    """Mark a seed as just used: pruning keeps the most recently used, not the newest made
    (a seed made long ago and used every night must outlive a trial's)."""
    with contextlib.suppress(OSError):  # another user's seed: read, not touched
        os.utime(seed_file)


def _last_use(seed_file: Path) -> float:
    try:
        return seed_file.stat().st_mtime
    except OSError:  # pruned by another process meanwhile
        return 0.0


def keep(target: Path, key: str | None) -> None:
    """After a successful dbt run, which leaves the saved parse true to the project as it is
    now: cache it when the cache has none for this project, written whole or not at all
    (homes in other processes may read it at the same moment)."""
    folder = cache_dir()
    saved = target / SAVED
    if folder is None or key is None or not saved.is_file():
        return
    if (folder / f"{key}.msgpack").is_file():
        _used(folder / f"{key}.msgpack")  # this project is in use, from a home's own parse
        return
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".seed-")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a cache shared by users (Airflow's, one's own) one user's
        with os.fdopen(fd, "wb") as out, saved.open("rb") as source:
            shutil.copyfileobj(source, out)
        os.replace(tmp, folder / f"{key}.msgpack")
        tmp = None
        for old in sorted(folder.glob("*.msgpack"), key=_last_use, reverse=True)[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
