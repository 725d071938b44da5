"""Write a delivery: the data file, then its control file (providers write it last)."""
from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ingestion.deliveries import file_sha256

JAKARTA = dt.timezone(dt.timedelta(hours=7))


def as_text(table: pa.Table) -> pa.Table:
    """Every column as text, so that planted defects can hold any value."""
    return pa.table({n: table[n].cast(pa.string()) for n in table.column_names})


def write_delivery(landing: Path, extract: str, business_date: dt.date, batches: Iterable[pa.Table] | pa.Table,
                   fmt: str, produced_at: dt.datetime, subdir: str | None = None) -> dict:
    folder = landing / subdir if subdir else landing
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{extract}__{business_date.isoformat()}.{fmt}"
    if isinstance(batches, pa.Table):
        batches = [batches]
    rows = 0
    if fmt == "parquet":
        tables = list(batches)
        table = pa.concat_tables(tables)
        pq.write_table(table, path, compression="zstd")
        rows = table.num_rows
    else:
        raw = path.open("wb")
        sink = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0, filename="") if fmt == "csv.gz" else raw
        writer = schema = None
        try:
            for t in batches:
                if writer is None:
                    schema = t.schema
                    writer = pacsv.CSVWriter(sink, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
                writer.write_table(t.cast(schema) if t.schema != schema else t)
                rows += t.num_rows
        finally:
            if writer is not None:
                writer.close()
            if sink is not raw:
                sink.close()
            raw.close()
    sha = file_sha256(path)
    control = {"extract": extract, "business_date": business_date.isoformat(), "schema_version": 1,
               "row_count": rows, "sha256": sha, "produced_at": produced_at.isoformat()}
    Path(str(path) + ".ctl.json").write_text(json.dumps(control, indent=1) + "\n")
    return {"file": str(path.relative_to(landing)), "extract": extract,
            "business_date": business_date.isoformat(), "rows": rows, "sha256": sha}

