-- One row per province, in the published column order and row order of outputs.md §2 (ineligible
-- entities last, by entity_code). Publication writes this view as CSV and Parquet.
{{ config(materialized='view') }}
{%- set category_columns = ['level', 'participants_active', 'participants_active_pu', 'participants_active_bpu', 'participants_active_jakon', 'participants_active_pmi', 'claims_paid_count', 'claims_paid_idr', 'death_benefit_count', 'death_benefit_idr', 'scholarship_children', 'scholarship_idr', 'apbd_allocation_idr', 'employers_active', 'employers_assessed', 'employers_compliant'] %}

select
    {{ ranking_columns('pemda', category_columns) }}
from {{ ref('pemda_indicators') }}
where level = 'PROVINSI'
order by rank_national, entity_code
