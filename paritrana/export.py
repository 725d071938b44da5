"""`paritrana export`: the latest published ranking of a category as CSV, Parquet or XLSX.

CSV and Parquet are the published bytes. The workbook is for evaluators opening Excel:
a frozen, filtered header row, number formats per column kind, and sheets that explain
the indicators, weights and targets and the run it came from (from the manifest).
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from .publication import RANKINGS, latest
from .settings import Paths

FORMATS = ("csv", "parquet", "xlsx")
INDICATORS = {
    "pemda_provinsi": "pemda", "pemda_kabkota": "pemda", "badan_usaha": "badan_usaha", "umk": "umk",
}
DESCRIPTIONS = {
    "coverage": "active participants in the territory ÷ employed population (P1)",
    "vulnerable_coverage": "active BPU participants in the territory ÷ informal employed (P2)",
    "non_asn_coverage": "non-ASN staff covered through this government's APBD/APBDES ÷ its non-ASN headcount (P3)",
    "apbd_support": "non-non-ASN participants funded by this government's APBD ÷ informal employed (P4)",
    "regulation": "a regional regulation on employment social security is in force (P5)",
    "employer_compliance": "share of assessed active employers of the territory that are compliant (P6)",
    "innovation": "the panel's innovation score ÷ 100 (P7)",
    "worker_registration": "min(PU participants ÷ reported workforce, 1) (B1)",
    "wage_compliance": "share of participants paid at least the applicable minimum wage (B2)",
    "program_compliance": "share of participants in every mandatory programme of the size class (B3)",
    "contribution_timeliness": "bills counting for the year paid on time ÷ bills counting (B4)",
    "ecosystem_extension": "CSR-funded participants of this employer ÷ reported workforce (B5)",
    "enrolment": "min(participants ÷ reported workforce, 1), or 1 when workforce is 0 and participants ≥ 1 (U1)",
    "payment_continuity": "bills counting for the year paid by the as-of date ÷ bills counting (U2)",
    "program_breadth": "mean over participants of (JKK + JKM + JHT) ÷ 3 (U3)",
}


class NothingPublished(FileNotFoundError):
    pass


def export(paths: Paths, category: str, year: int, fmt: str, out: Path) -> Path:
    if category not in RANKINGS:
        raise ValueError(f"unknown category {category!r}; one of {', '.join(RANKINGS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    folder = latest(paths, year)
    if folder is None:
        raise NothingPublished(f"nothing published for {year} under {paths.home / 'published' / str(year)}")
    out = Path(out)
    if out.is_dir():  # as `cp` does: into the folder, under the published file's name
        out = out / f"rankings_{category}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "parquet"):
        shutil.copyfile(folder / f"rankings_{category}.{fmt}", out)
    else:
        write_workbook(folder, category, out)
    return out


def _number_format(column: str) -> str | None:
    if column.endswith("_score"):
        return "0.0000"
    if column.endswith("_value"):
        return "0.000000"
    if column.endswith("_idr"):
        return "#,##0"
    if column.startswith(("rank_", "participants", "employers_", "claims_", "death_", "scholarship_")) \
            or column in ("reported_workforce", "arrears_months", "year"):
        return "#,##0" if column != "year" else "0"
    return None


def _typed(value: str, column: str):
    if value == "":
        return None
    if value in ("true", "false"):
        return value == "true"
    fmt = _number_format(column)
    if fmt is None:
        return value
    return int(value) if fmt in ("#,##0", "0") else float(value)


def write_workbook(folder: Path, category: str, out: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    manifest = json.loads((folder / "manifest.json").read_text())
    wb = Workbook()
    ws = wb.active
    ws.title = category[:31]
    with (folder / f"rankings_{category}.csv").open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        ws.append(header)
        for row in reader:
            ws.append([_typed(v, c) for v, c in zip(row, header)])
    bold, fill = Font(bold=True, color="FFFFFF"), PatternFill("solid", fgColor="1F4E78")
    for i, column in enumerate(header, start=1):
        cell = ws.cell(row=1, column=i)
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(10, min(40, len(column) + 2))
        fmt = _number_format(column)
        if fmt:
            for (c,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                c.number_format = fmt
    ws.freeze_panes = "F2"
    ws.auto_filter.ref = ws.dimensions

    config = manifest["configuration"]["values"]
    group = INDICATORS[category]
    info = wb.create_sheet("Indicators")
    info.append(["indicator", "definition", "weight", "target", "score"])
    for name, weight in config["weights"][group].items():
        info.append([name, DESCRIPTIONS.get(name, ""), weight, config["targets"][group][name],
                     "100 × min(value ÷ target, 1)"])
    info.append([])
    info.append(["total_score", "Σ weight × score ÷ Σ weight; empty for ineligible entities"])
    info.append(["ranks", "round(total, 6) desc, first indicator score desc, entity code asc"])
    if group == "badan_usaha":
        info.append(["mandatory programmes", json.dumps(config["mandatory_programmes"])])
        info.append(["arrears threshold (months)", config["arrears_threshold"]])
    for cell in info[1]:
        cell.font = Font(bold=True)
    info.column_dimensions["A"].width, info.column_dimensions["B"].width = 26, 90

    about = wb.create_sheet("Run")
    for k in ("run_id", "year", "as_of", "created_at", "code_version"):
        about.append([k, manifest[k]])
    about.append(["configuration sha256", manifest["configuration"]["sha256"]])
    about.append(["source file", f"rankings_{category}.csv in {folder}"])
    about.column_dimensions["A"].width, about.column_dimensions["B"].width = 24, 80
    tmp = out.with_name(f".{out.name}.tmp")
    wb.save(tmp)
    tmp.replace(out)
