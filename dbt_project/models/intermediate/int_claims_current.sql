-- Each claim's current state: its highest claim_version; between equal versions the later
-- business date wins (extracts.md §3.3). Knowledge is every delivery loaded, also those
-- after D (methodology §1), so this does not depend on the as-of date.
{%- set columns = ['claim_id', 'claim_version', 'kpj', 'npp', 'region_code', 'program', 'benefit_type',
                   'status', 'submitted_date', 'paid_date', 'amount_idr', 'business_date', 'load_id',
                   'line_number'] %}
{{ current_row_config('claim_id', 'any_as_of', 'stg_claims', columns) }}

{{ current_row_per_key(
    history=ref('stg_claims'),
    key='claim_id',
    columns=columns,
    order_by='claim_version desc, business_date desc, line_number desc',
    as_of_sql=any_as_of()) }}
