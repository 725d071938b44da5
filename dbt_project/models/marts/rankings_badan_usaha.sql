-- One row per business (BESAR, MENENGAH, KECIL), in the published column order and row order of outputs.md §2 (ineligible
-- entities last, by entity_code). Publication writes this view as CSV and Parquet.
{{ config(materialized='view') }}
{%- set category_columns = ['size_class', 'sector', 'participants', 'reported_workforce', 'pds_workers', 'pds_wage', 'pds_program', 'arrears_months'] %}

select
    {{ ranking_columns('badan_usaha', category_columns) }}
from {{ ref('badan_usaha_indicators') }}

-- eligible rows by size class then rank; ineligible ones last, by entity_code alone
order by case when eligible then 0 else 1 end,
    case when eligible then (case size_class when 'BESAR' then 1 when 'MENENGAH' then 2 else 3 end) end,
    rank_national, entity_code
