-- Each contribution bill's latest state: a later business date's row for the same
-- (npp, period_month) replaces the earlier one (extracts.md §3.4). A delivery holds at most
-- one row per bill: two rows with the same key are both quarantined (KEY_CONFLICT).
{%- set columns = ['bill_key', 'npp', 'period_month', 'period_year', 'due_date', 'workers_billed',
                   'billed_idr', 'paid_idr', 'paid_date', 'business_date', 'load_id', 'line_number'] %}
{{ current_row_config('bill_key', 'any_as_of', 'stg_contributions', columns) }}

{{ current_row_per_key(
    history=ref('stg_contributions'),
    key='bill_key',
    columns=columns,
    order_by='business_date desc, line_number desc',
    as_of_sql=any_as_of(),
    unique_per_load=true) }}
