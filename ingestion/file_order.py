"""Reading a CSV file in its order: DuckDB reads no row number from a CSV file, so a
record's place in the stage is its place in the file, and every statement that relies on
that has its plan checked before it runs."""
from __future__ import annotations

import json

from .deliveries import Delivery
from .personal_data import Tokeniser
from .sources import unreadable

# A CSV file has no row number that DuckDB reads, so the stage's rowid is the record's index
# in the file (line numbers, the first copy of an exact duplicate). DuckDB writes a
# statement's rows in input order only when the plan keeps it: with preserve_insertion_order
# and a plan of scans and projections, rows are written batch by batch in order
# (BATCH_CREATE_TABLE_AS); a join anywhere frees the writer to take rows as threads deliver
# them. Ingestion's scans have no joins of their own, but DuckDB rewrites an IN list of five
# or more constants (occupation, funding, NIK province) into one. That rewrite is off while
# ingesting, and `read` checks the plan of every statement that must keep the order.
# (Before 0.3.1 it was on: CSV files of about 700 k rows or more were staged out of order.)
ORDER_KEEPING_SINKS = ("BATCH_CREATE_TABLE_AS", "BATCH_INSERT")
NO_JOIN_REWRITE = "in_clause"
# The rare passes that read a CSV file again number its records as read (`Source.record_as_read`,
# `row_number() over ()`). DuckDB computes that with a STREAMING_WINDOW, an operator that cannot
# run in parallel: the pipeline from the reader up to it runs on one thread, so records are
# numbered in file order whatever the thread count. `read` checks the plan of those passes.
NUMBERING_OPERATOR = "STREAMING_WINDOW"


def read(con, d: Delivery, tokeniser: Tokeniser, sql: str, in_file_order: bool = False,
         numbered: bool = False, params: dict | None = None) -> None:
    """Run a statement that reads the data file: a reader error rejects the file. With
    `in_file_order`, the statement must write its rows in the file's order; with
    `numbered`, it must number the records it reads in the file's order."""
    params = {**{k: v for k, v in tokeniser.params.items() if f"${k}" in sql}, **(params or {})} or None
    try:
        tree = plan(con, sql, params) if in_file_order or numbered else None
    except Exception as e:  # noqa: BLE001
        raise unreadable(d, e) from None
    if in_file_order:
        require_input_order(con, tree["name"], sql)
    if numbered:
        require_numbering_in_file_order(tree, sql)
    try:
        con.execute(sql, params)
    except Exception as e:  # noqa: BLE001
        raise unreadable(d, e) from None


def plan(con, sql: str, params: dict | None = None) -> dict:
    """The statement's physical plan (it is planned, not run): nested `name`/`children`."""
    return json.loads(con.execute(f"explain (format json) {sql}", params).fetchall()[0][1])[0]


def sink(con, sql: str, params: dict | None = None) -> str:
    """The operator that writes a statement's rows: the root of its physical plan."""
    return plan(con, sql, params)["name"]


def require_input_order(con, sink: str, sql: str) -> None:
    """Refuse to run a statement whose plan does not write its rows batch by batch in input
    order (or on one thread): a programming error (a join in a scan), not the file's fault."""
    threads = con.execute("select current_setting('threads')").fetchone()[0]
    if sink not in ORDER_KEEPING_SINKS and threads > 1:
        statement = " ".join(sql.split())[:200]
        raise RuntimeError(f"ingestion's plan would not keep the file's order (writer {sink}, not one of "
                           f"{', '.join(ORDER_KEEPING_SINKS)}), so its line numbers would be wrong: {statement}")


def require_numbering_in_file_order(tree: dict, sql: str) -> None:
    """Refuse to run a statement whose plan would number a CSV file's records other than by
    a STREAMING_WINDOW fed straight by the reader (through projections only):
    any other window operator sorts or runs in parallel, and its numbers need not follow
    the file. A programming error or a DuckDB change, not the file's fault."""
    def numbered_in_order(node: dict, numbered: bool) -> bool:
        if node["name"] == "READ_CSV":
            return numbered
        # Between the window and the reader only projections: a filter there would number
        # the records it keeps, not the file's.
        numbered = node["name"] == NUMBERING_OPERATOR or (numbered and node["name"] == "PROJECTION")
        return all(numbered_in_order(child, numbered) for child in node.get("children", []))

    if not numbered_in_order(tree, False):
        statement = " ".join(sql.split())[:200]
        raise RuntimeError("ingestion's plan would not number the file's records in file order (no "
                           f"{NUMBERING_OPERATOR} straight above the reader), so re-read records could be "
                           f"paired with the wrong rows: {statement}")
