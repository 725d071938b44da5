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
{%- set mode = aggregate_config('int_participant_state', 'cell_key', 'minimum_wage_fingerprint',
                                'participants = 0') %}

{#- the changed participants' new states, read from the history by row locator: the state
    is a view (int_participant_state) -#}
{%- set new_states = state_from_outdated_rows(
        ref('stg_participants'), ref('int_participant_outdated_rows'), 'kpj', participant_state_columns(),
        as_of_date(), 'effective_date',
        keys_sql='select changed_kpj from ' ~ state_changes_relation('int_participant_state')) %}

with minimum_wage as (
    select * from {{ ref('int_applicable_minimum_wage') }}
),

weighted as (
    {{ weighted_rows(mode, 'int_participant_state', 'kpj', participant_cell_attributes(), new_states) }}
),

signed as (
    {{ participant_cell_rows('weighted') }}
),

counted as (
    select
        {{ dbt.hash(dbt.concat(cell_key_parts(dimensions))) }} as cell_key,
        {{ dimensions | join(', ') }},
        {{ sum_bigint('weight') }} as participants
    from signed
    group by {{ dimensions | join(', ') }}
)

{{ updated_counts(mode, 'cell_key', dimensions, ['participants']) }}
