-- Each participant's state on D: its row with the greatest effective_date <= D; between
-- equal effective dates the later business date wins, then the later line (extracts.md
-- §3.1). Participants with no row effective on or before D do not exist for Y.
{%- set columns = ['kpj', 'nik_token', 'nik_consistent', 'birth_date', 'gender', 'segment', 'npp',
                   'region_code', 'occupation', 'funding', 'funder_code', 'jkk', 'jkm', 'jht', 'jp',
                   'jkp', 'monthly_wage_idr', 'status', 'effective_date', 'business_date',
                   'load_id', 'line_number'] %}
{{ current_row_config('kpj', 'as_of_date', 'stg_participants', columns, 'effective_date') }}

{{ current_row_per_key(
    history=ref('stg_participants'),
    key='kpj',
    columns=columns,
    order_by='effective_date desc, business_date desc, line_number desc',
    as_of_sql=as_of_date(),
    effective_column='effective_date') }}
