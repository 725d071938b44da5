-- Each employer's state on D, by the participants' versioning rule (extracts.md §3.2).
-- Small enough (one row per employer version) to rebuild in full every run.
{{ current_row_config('npp', 'as_of_date', 'stg_employers', materialized='table') }}

{{ current_row_per_key(
    history=ref('stg_employers'),
    key='npp',
    columns=['npp', 'employer_name', 'size_class', 'sector', 'region_code', 'reported_workforce',
             'status', 'effective_date', 'business_date', 'load_id', 'line_number'],
    order_by=state_version_order(),
    as_of_sql=as_of_date(),
    effective_column='effective_date') }}
