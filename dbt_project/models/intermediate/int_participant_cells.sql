-- Participant states on D counted per cell: one row per combination of the attributes the
-- indicators group and filter by, with how many participants have it. At national size,
-- 50 M participant states fall into 3 M cells, and a night's changes move about 200,000
-- participants between cells; the marts read this table, not the states.
--
-- Incremental: a nightly run adds the changes int_participant_state recorded (its
-- participants' new states counted +1, their replaced states -1) to the cells they touch,
-- so the cost follows the delta. It rebuilds from the states when that chain is broken
-- (a full refresh, a new as-of date, a failed run in between) or when the minimum wages
-- the wage cells were judged against have changed (state_changes.sql).
{%- set dimensions = participant_cell_dimensions() %}
{%- set mode = aggregate_mode('int_participant_state', minimum_wage_fingerprint()) %}
{%- do log('int_participant_cells: ' ~ mode, info=execute) %}

{{ config(
    materialized='incremental',
    unique_key='cell_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook=[
        "delete from {{ this }} where participants = 0",
        "{{ save_aggregate_basis('int_participant_state', minimum_wage_fingerprint()) }}",
    ]) }}

with minimum_wage as (
    select * from {{ ref('int_applicable_minimum_wage') }}
),

{% if mode == 'delta' -%}
replaced as (
    select {{ participant_cell_attributes() | join(', ') }}, -1 as weight
    from {{ state_changes_relation('int_participant_state') }}
    where kpj is not null
),

replacing as (
    select {{ participant_cell_attributes() | join(', ') }}, 1 as weight
    from {{ ref('int_participant_state') }}
    where kpj in (select changed_kpj from {{ state_changes_relation('int_participant_state') }})
),

signed as (
    {{ participant_cell_rows('replaced') }}
    union all
    {{ participant_cell_rows('replacing') }}
),
{%- else %}
states as (
    select {{ participant_cell_attributes() | join(', ') }}, 1 as weight
    from {{ ref('int_participant_state') }}
    {% if mode == 'current' %}where 1 = 0{% endif %}
),

signed as (
    {{ participant_cell_rows('states') }}
),
{%- endif %}

counted as (
    select
        {{ dbt.hash(dbt.concat(cell_key_parts(dimensions))) }} as cell_key,
        {{ dimensions | join(', ') }},
        {{ sum_bigint('weight') }} as participants
    from signed
    group by {{ dimensions | join(', ') }}
)

{% if mode == 'delta' -%}
select
    counted.cell_key,
    {%- for d in dimensions %}
    counted.{{ d }},
    {%- endfor %}
    counted.participants + coalesce(cells.participants, 0) as participants
from counted
left join {{ this }} as cells on cells.cell_key = counted.cell_key
{%- else -%}
select * from counted
{%- if mode == 'full' and is_incremental() %}
-- a rebuild in place: cells no longer there are emptied, and the post-hook removes them
union all
select cell_key, {{ dimensions | join(', ') }}, 0 as participants
from {{ this }}
where cell_key not in (select cell_key from counted)
{%- endif %}
{%- endif %}
