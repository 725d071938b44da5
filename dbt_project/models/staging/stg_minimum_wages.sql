-- UMP (province rows) and UMK (regency/city rows) per year, from that year's latest snapshot.
{{ reference_snapshot('minimum_wages', ['minimum_wage_idr']) }}
