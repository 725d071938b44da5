-- The participant rows on or before D that are not their participant's state on D: an
-- earlier version, outranked by one with a greater effective_date, or an equal one with a
-- later business date, or a later line (extracts.md §3.1). int_participant_state is the
-- history on or before D minus these rows (outdated_rows.sql says why, and how a nightly
-- run appends to them).
{%- set columns = participant_state_columns() %}
{%- set version_columns = ['kpj', 'effective_date', 'business_date', 'load_id', 'line_number'] %}
{%- set rebuild = outdated_rows_config('int_participant_state', 'participants', 'stg_participants', 'kpj',
                                       'as_of_date', columns, 'effective_date') %}

{%- if rebuild %}
-- Only the participants with several rows on or before D can have an outdated one: the
-- window sorts their few million rows, not the whole history, which is read twice,
-- streamed (written out, it would be the 50 M rows this model exists not to write).
with history as {{ streamed_cte() }} (
    select {{ version_columns | join(', ') }} from {{ ref('stg_participants') }}
    where effective_date <= {{ as_of_date() }}
),

several_rows as (
    {{ keys_on_several_rows('history', 'kpj') }}
),

candidates as (
    select history.* from history
    where {{ several_key_of('history.kpj') }} in (select several_key from several_rows)
),
{%- else %}
-- A touched participant's new outdated rows are among its state before the run (recorded
-- by the pre-hook) and its rows loaded since; the rows outdated before stay so.
with candidates as (
    select {{ version_columns | join(', ') }} from {{ state_changes_relation('int_participant_state') }}
    where kpj is not null
    union all
    select {{ version_columns | join(', ') }} from {{ ref('stg_participants') }}
    where load_id > (select from_watermark from {{ state_transition_relation('int_participant_state') }})
      and effective_date <= {{ as_of_date() }}
),
{%- endif %}

ranked as (
    select
        kpj,
        load_id,
        line_number,
        row_number() over (
            partition by kpj order by {{ state_version_order() }}
        ) as version_rank
    from candidates
)

select kpj, load_id, line_number, {{ as_of_date() }} as as_of
from ranked
where version_rank > 1
