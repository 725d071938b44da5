-- One row per micro enterprise, in the published column order and row order of outputs.md §2 (ineligible
-- entities last, by entity_code). Publication writes this view as CSV and Parquet.
{{ config(materialized='view') }}
{%- set category_columns = ['sector', 'participants', 'reported_workforce', 'arrears_months'] %}

select
    {{ ranking_columns('umk', category_columns) }}
from {{ ref('umk_indicators') }}

order by rank_national, entity_code
