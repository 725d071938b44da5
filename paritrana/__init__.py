"""Paritrana Warehouse: the batch data platform behind Indonesia's Paritrana Award."""
from pathlib import Path

__version__ = "0.3.28"


def code_version() -> str:
    """The version and, in a git checkout, its commit (`0.3.11+3f3f58c5b301`): what every
    manifest records and `paritrana --version` prints."""
    root = Path(__file__).resolve().parent.parent
    commit = ""
    try:
        ref = (root / ".git" / "HEAD").read_text().strip()
        commit = (root / ".git" / ref[5:]).read_text().strip() if ref.startswith("ref: ") else ref
    except OSError:
        pass
    return __version__ + (f"+{commit[:12]}" if commit else "")
