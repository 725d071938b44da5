"""Raw NIK and names never land: not in any table, the quarantine, the ledger or files (extracts.md §4)."""
from __future__ import annotations

import hashlib
import json

import duckdb
import pyarrow.csv as pacsv
import pytest

from conftest import KEY, PARTICIPANT_HEADER, csv_text, paritrana, participant, write_delivery

from ingestion.personal_data import MASK, NIK_SHAPED, token
from paritrana.generator import generate


def _input_personal_values(landing):
    niks, names = set(), set()
    for path in landing.glob("participants__*.csv*"):
        if path.name.endswith(".ctl.json"):
            continue
        t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"nik": "string",
                                                                                    "full_name": "string"}))
        niks |= {v for v in t["nik"].to_pylist() if v}
        names |= {v for v in t["full_name"].to_pylist() if v}
    return niks, names


def _every_table_as_text(home) -> str:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return "\n".join(json.dumps(row, default=str) for schema, table in con.execute(
            "select table_schema, table_name from information_schema.tables").fetchall()
            for row in con.execute(f'select * from "{schema}"."{table}"').fetchall())
    finally:
        con.close()


def test_no_raw_nik_or_name_anywhere(tmp_path, home, load):
    landing = tmp_path / "in"
    generate(landing, "demo", scale=0.2, days_after=1)
    load(landing)
    niks, names = _input_personal_values(landing)
    assert len(niks) > 1000 and len(names) > 10

    text = _every_table_as_text(home)
    assert not any(n in text for n in niks)
    assert not any(n in text for n in names)
    # The quarantine keeps content, masked: the planted row with a name still shows none.
    assert '<masked>' in text
    # Nor in the bytes of any file the run left in HOME (warehouse, WAL, temp files, run records).
    for path in home.home.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            blob = path.read_bytes()
            assert not any(n.encode() in blob for n in list(niks)[:2000]), path


def test_token_is_keyed_sha256_and_joins_equal_niks(tmp_path, home, load, sql):
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [
        participant(kpj="17000000001"), participant(kpj="17000000002")]))
    load(tmp_path / "in")
    # Computed here from its definition: SHA-256 of (a 32-byte key derived from the user's
    # key, then the NIK), first 128 bits.
    nik_key = hashlib.sha256(b"paritrana/nik-token/v2\0" + KEY).digest()
    expected = int.from_bytes(hashlib.sha256(nik_key + b"1771014508900003").digest()[:16], "big")
    assert token(KEY, "1771014508900003") == expected != token(b"another key", "1771014508900003")
    assert sql("select distinct nik_token from raw.participants") == [(expected,)]
    assert sql("select data_type from information_schema.columns where column_name = 'nik_token'") == [("UHUGEINT",)]


def test_hmac_scheme_on_request_and_a_warehouse_keeps_its_scheme(tmp_path, home, load, sql, monkeypatch):
    """PARITRANA_NIK_TOKEN=hmac-sha256 gives HMAC-SHA256 (first 128 bits), as extracts.md
    names it first; the warehouse records it and refuses the other scheme later."""
    import hmac

    import pytest
    from ingestion.personal_data import SCHEME_ENV
    from ingestion.raw_schema import IncompatibleWarehouse
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [
        participant(kpj="17000000001")]))
    monkeypatch.setenv(SCHEME_ENV, "hmac-sha256")
    load(tmp_path / "in")
    expected = int(hmac.new(KEY, b"1771014508900003", hashlib.sha256).hexdigest()[:32], 16)
    assert token(KEY, "1771014508900003", "hmac-sha256") == expected != token(KEY, "1771014508900003")
    assert sql("select nik_token from raw.participants") == [(expected,)]
    assert sql("select value from raw.warehouse_settings where name = 'nik_token_scheme'") == [("hmac-sha256",)]
    monkeypatch.delenv(SCHEME_ENV)
    with pytest.raises(IncompatibleWarehouse, match="tokens are hmac-sha256"):
        load(tmp_path / "in")
    monkeypatch.setenv(SCHEME_ENV, "md5")
    with pytest.raises(ValueError, match="expected one of"):
        load(tmp_path / "in")


def test_warehouse_with_tokens_of_another_scheme_is_refused(tmp_path):
    import pytest
    from ingestion.raw_schema import IncompatibleWarehouse, ensure_raw_schema
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("create schema raw; create table raw.participants (kpj varchar, nik_token varchar)")
    with pytest.raises(IncompatibleWarehouse, match="earlier scheme"):
        ensure_raw_schema(con)
    # Made by 0.2 before the scheme was recorded: its tokens are the default scheme's.
    con = duckdb.connect(str(tmp_path / "early.duckdb"))
    con.execute("create schema raw; create table raw.participants (kpj varchar, nik_token uhugeint)")
    con.execute("insert into raw.participants values ('17000000001', 1)")
    with pytest.raises(IncompatibleWarehouse, match="tokens are sha256-prefix"):
        ensure_raw_schema(con, "hmac-sha256")
    ensure_raw_schema(con)


def test_nik_consistency_flag(tmp_path, load, sql):
    rows = [
        participant(kpj="17000000001"),  # female born 05-08-1990: day 45, month 08, year 90
        participant(kpj="17000000002", gender="L", nik="1771010508900003"),  # male: day 05
        participant(kpj="17000000003", nik="1771010508900003"),  # female but day not +40
        participant(kpj="17000000004", nik="1771014509900003"),  # wrong month
        participant(kpj="17000000005", nik="1771014508910003"),  # wrong year
        participant(kpj="17000000006", nik="9971014508900003"),  # 99 is no province
    ]
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, rows))
    load(tmp_path / "in")
    assert sorted(sql("select kpj, nik_consistent from raw.participants")) == [
        ("17000000001", True), ("17000000002", True), ("17000000003", False), ("17000000004", False),
        ("17000000005", False), ("17000000006", False)]


def test_key_file_is_outside_the_warehouse_and_private(tmp_path, monkeypatch):
    from ingestion.personal_data import KEY_ENV, load_key
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = load_key(tmp_path)
    path = tmp_path / "secrets" / "nik_token.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path) == key and len(key) == 64
    monkeypatch.setenv(KEY_ENV, "from-env-" + "k" * 23)
    assert load_key(tmp_path) == b"from-env-" + b"k" * 23
    # a key file others may read (a restore that reset its mode) is refused, as ssh refuses a private key
    monkeypatch.delenv(KEY_ENV)
    path.chmod(0o644)
    with pytest.raises(ValueError, match=f"the NIK key file {path} may be read or written by other users "
                                         r"\(mode 644\).* chmod 600"):
        load_key(tmp_path)
    path.chmod(0o600)
    assert load_key(tmp_path) == key


@pytest.mark.parametrize("where", ["environment", "file"])
def test_a_key_short_enough_to_guess_is_refused_before_anything_is_loaded(tmp_path, monkeypatch, where):
    """Analysts hold the warehouse: with a guessable key its tokens could be recomputed for
    guessed NIKs. A key of fewer than 32 characters is refused, never printed, and the run
    loads nothing."""
    from ingestion.personal_data import KEY_ENV, MIN_KEY_CHARS, load_key

    home = tmp_path / "home"
    short = "paritrana-2024-" + "x" * (MIN_KEY_CHARS - 16)
    if where == "file":
        monkeypatch.delenv(KEY_ENV, raising=False)
        (home / "secrets").mkdir(parents=True)
        (home / "secrets" / "nik_token.key").write_text(short + "\n")
        (home / "secrets" / "nik_token.key").chmod(0o600)
    else:
        monkeypatch.setenv(KEY_ENV, short)
    with pytest.raises(ValueError, match=f"has {MIN_KEY_CHARS - 1} characters, fewer than {MIN_KEY_CHARS}"):
        load_key(home)
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant()]))
    result = paritrana("run", "--landing", str(tmp_path / "in"), "--year", "2024", "--home", str(home),
                       env={KEY_ENV: short} if where == "environment" else None,
                       unset=(KEY_ENV,) if where == "file" else ())
    assert result.returncode == 1 and "fewer than 32" in result.stderr and "Traceback" not in result.stderr
    assert short not in result.stdout + result.stderr
    assert not (home / "warehouse.duckdb").exists() or "participants__" not in _ledger_names(home)


def _ledger_names(home) -> str:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return " ".join(r[0] for r in con.execute("select file_name from raw.load_ledger").fetchall())
    except duckdb.CatalogException:
        return ""
    finally:
        con.close()


def test_a_column_the_contract_does_not_know_never_lands_either(tmp_path, home, load, sql):
    """Unknown columns are ignored (extracts.md §1) and may hold personal data the contract
    does not name: the quarantine masks them as it masks `nik`, and exact duplicates are
    still told apart by them."""
    heirs = ["1771016502850001", "1771016502850002", "1771016502850003"]
    a = {**participant(kpj="17000000001", gender="X"), "nik_ahli_waris": heirs[0]}  # quarantined
    b = {**participant(kpj="17000000002"), "nik_ahli_waris": heirs[1]}
    c = {**b, "nik_ahli_waris": heirs[2]}  # differs from b only in the unknown column: not a duplicate
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv",
                   csv_text(PARTICIPANT_HEADER + ",nik_ahli_waris", [a, b, c, dict(b)]))
    r = load(tmp_path / "in").results[0]
    assert (r.rows_loaded, r.rows_quarantined, r.rows_duplicate, r.extra_columns) == (2, 1, 1, ["nik_ahli_waris"])
    (content,) = [json.loads(c) for (c,) in sql("select content from raw.quarantine")]
    assert (content["kpj"], content["gender"], content["nik_ahli_waris"]) == ("17000000001", "X", MASK)
    dump = _every_table_as_text(home)
    assert "17000000001" in dump and not any(h in dump for h in heirs)


def test_a_warehouse_refuses_a_key_that_did_not_make_its_tokens(tmp_path):
    """A home restored without HOME/secrets/nik_token.key (created again when missing), or a
    worker without $PARITRANA_NIK_KEY, must not start a second set of tokens for the same
    people: the run stops before loading, saying which key to restore."""
    from paritrana.pipeline import ingest_step
    from paritrana.settings import resolve_home

    paths = resolve_home(tmp_path / "home")
    landing = tmp_path / "in"
    write_delivery(landing, "participants__2024-12-30.csv", csv_text(PARTICIPANT_HEADER, [participant()]))
    ingest_step(paths, landing, "first", progress=lambda _: None)
    key_file = paths.home / "secrets" / "nik_token.key"
    kept = key_file.read_bytes()
    key_file.unlink()  # lost in a restore
    write_delivery(landing, "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [participant(kpj="17000000009")]))
    out = paritrana("run", "--landing", str(landing), "--year", "2024", "--home", str(paths.home),
                    unset=("PARITRANA_NIK_KEY",))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "the NIK token key is not this warehouse's" in out.stderr and "nik_token.key" in out.stderr
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    assert con.execute("select count(*) from raw.load_ledger").fetchone() == (1,)
    con.close()
    key_file.write_bytes(kept)  # restored: the same command goes on
    report = ingest_step(paths, landing, "again", progress=lambda _: None)
    assert [r.status for r in report.results] == ["LOADED"]


def test_a_nik_delivered_in_another_column_is_masked_in_the_quarantine(tmp_path, home, load, sql):
    """A provider who puts the NIK where the participant number goes (claims keyed by NIK,
    or a participants header with `kpj` and `nik` swapped) gets every row quarantined as
    BAD_FORMAT, and the quarantine shows the delivered text of `kpj`: the raw NIKs would
    land there. A value of 16 digits in a row, in any column, is masked as NIK-shaped."""
    niks = ["1771014508900003", "1771015208850004"]
    claim = dict(claim_id="C000000000001", claim_version="1", kpj=niks[0], npp="BK000123", region_code="17.71",
                 program="JKK", benefit_type="MEDICAL", submitted_date="2024-12-01", status="SUBMITTED",
                 paid_date="", amount_idr="0")
    header = "claim_id,claim_version,kpj,npp,region_code,program,benefit_type,submitted_date,status,paid_date,amount_idr"
    short = {**claim, "claim_id": "C000000000002", "kpj": "1234"}  # a bad kpj that is no NIK stays as delivered
    write_delivery(tmp_path / "in", "claims__2024-12-31.csv", csv_text(header, [claim, short]))
    swapped = PARTICIPANT_HEADER.replace("kpj,nik,", "nik,kpj,")  # labels swapped, values in the usual order
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(swapped, [
        {"nik": "17000000001", "kpj": niks[1], **{k: v for k, v in participant().items() if k not in ("kpj", "nik")}}]))
    report = load(tmp_path / "in")
    assert sorted((r.file_name, r.rows_quarantined) for r in report.results) == [
        ("claims__2024-12-31.csv", 2), ("participants__2024-12-31.csv", 1)]
    contents = {(f, line): (codes, json.loads(c)) for f, line, codes, c in
                sql("select file_name, line, reason_codes, content from raw.quarantine")}
    codes, first = contents[("claims__2024-12-31.csv", 2)]
    assert codes == ["BAD_FORMAT"] and first["kpj"] == NIK_SHAPED and first["claim_id"] == "C000000000001"
    assert contents[("claims__2024-12-31.csv", 3)][1]["kpj"] == "1234"
    codes, person = contents[("participants__2024-12-31.csv", 2)]
    assert "BAD_FORMAT" in codes and person["kpj"] == NIK_SHAPED and person["nik"] == MASK
    dump = _every_table_as_text(home)
    assert "C000000000001" in dump and not any(n in dump for n in niks)


def test_the_token_written_as_text_is_its_decimal_digits_at_every_boundary():
    """The quarantine's content and the PostgreSQL copy write the 128-bit token as text by
    parts (DuckDB's own cast took 15 µs a value): every digit must be the one
    `cast(token as varchar)` gives, at the parts' boundaries too."""
    import random

    from ingestion.personal_data import token_text_sql

    rng = random.Random(7)
    values = [0, 1, 9, 10, 2**63, 2**64 - 1, 2**64, 10**19 - 1, 10**19, 10**19 + 1, 2 * 10**19 - 1, 2 * 10**19,
              2 * 10**19 + 1, 3 * 10**19, 10**38 - 1, 10**38, 10**38 + 1, 2**127 - 1, 2**127, 2**127 + 1,
              3 * 10**38, 2**128 - 2, 2**128 - 1] + [rng.getrandbits(rng.randint(1, 128)) for _ in range(5000)]
    con = duckdb.connect()
    con.execute("create table t (v uhugeint)")
    con.executemany("insert into t values (cast(? as uhugeint))", [[str(v)] for v in values])
    got = con.execute(f"select cast(v as varchar), {token_text_sql('v')} from t").fetchall()
    assert [b for _, b in got] == [a for a, _ in got] == [str(v) for v in values]


def test_a_quarantined_person_can_be_looked_up_by_token(tmp_path, home, load, sql):
    """A quarantined participant's content keeps the token of its NIK, the raw table's
    `nik_token` as text, so that the person can be found once the row is corrected."""
    niks = [f"17710145{i:08d}" for i in range(0, 40_000_000, 1_000_003)]
    write_delivery(tmp_path / "in", "participants__2024-12-31.csv", csv_text(PARTICIPANT_HEADER, [
        participant(kpj=f"170000{i:05d}", nik=nik, gender="X") for i, nik in enumerate(niks)]))
    load(tmp_path / "in")
    kept = dict(sql("select line, content->>'nik_token' from raw.quarantine"))
    assert len(kept) == len(niks) and [kept[i + 2] for i in range(len(niks))] == [str(token(KEY, n)) for n in niks]
