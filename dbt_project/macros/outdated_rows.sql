{#-
  A state on D kept as the rows it is not.

  Most participants have one row in the whole history, and that row is their state on D.
  A table of the states would write the 50 M rows of the history a second time (45-56 s of
  the first build at national size, most of it writing). Instead int_participant_outdated_rows
  lists the rows on or before D that a later version of the same participant outranks
  (1.5 M rows of (kpj, load_id, line_number) at national size, 11-13 s), and
  int_participant_state is a view: the history on or before D minus those rows.

  Incremental: rows only arrive, so a row once outranked stays outranked. A run appends the
  rows that the loads since its last run outrank: for each participant those loads touched
  (with a row on or before D), its state before the run and its new rows, all but the
  best. A correction that superseded a delivery the last run had seen removes rows from
  the history, perhaps a state: then the run rebuilds the list, as it does for a new as-of
  date or a full refresh. Corrections of the participants' extract are rare (the nightly
  deliveries add versions), so the rebuild (a full build's cost) is the exception.

  The pre-hook records, like state_changes.sql does for the current-row tables, each
  touched participant with its state before the run (<state>_changes) and the run's step
  (<state>_transition), under the state view's name: the cells and the key test read them
  from there.
-#}

{#- Whether this run lists the outdated rows from scratch: not incremental, a new as-of
    date (no watermark for it), or a correction since the last run of a delivery of
    `extract` that the last run had seen. -#}
{% macro outdated_rows_rebuild(extract, as_of_sql) -%}
    {%- if not execute or not is_incremental() -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set query -%}
        with last_run as (select {{ last_watermark(as_of_sql) }} as watermark)
        select
            (select watermark from last_run) = 0
            or exists (
                select 1 from {{ source('raw', 'load_ledger') }}
                where extract = '{{ extract }}' and status = 'SUPERSEDED'
                  and load_id <= (select watermark from last_run)
                  and superseded_by > (select watermark from last_run))
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}

{#- The state on D of every key, or of the keys in keys_sql (read by row locator, see
    row_locator.sql), from the history and its outdated rows; max_load_sql: only rows of
    loads up to it (the state as the last run left it). -#}
{% macro state_from_outdated_rows(history, outdated, key, columns, as_of_sql, effective_column,
                                  keys_sql=none, max_load_sql=none) -%}
{#- the history's rows in scope: on or before D, and up to max_load_sql when given -#}
{%- set in_scope = [effective_column ~ ' <= ' ~ as_of_sql]
                   + (['load_id <= ' ~ max_load_sql] if max_load_sql else []) -%}
{%- if keys_sql %}
-- the keys' rows first: left to itself, DuckDB takes the outdated rows away from the whole
-- history before picking the keys' rows (national 1.0: 6-8 s for no key at all, 0.1 s so).
-- The date and load filters go with the keys, where the locators are chosen: a filter on
-- the fetched rows is pushed down to the history's scan, and DuckDB then reads and hashes
-- every row of it instead of fetching the keys' rows (national 1.0: 15 s a night).
with keyed_history as {{ materialized_cte() }} (
    {{ rows_for_keys(history, key, keys_sql, locator='source_row' if has_source_row(history) else none,
                     where_sql=in_scope | join(' and ')) }}
)

{% endif -%}
select
    {%- for column in columns %}
    history.{{ column }},
    {%- endfor %}
    {{ as_of_sql }} as as_of
from {{ 'keyed_history' if keys_sql else history }} as history
left join {{ outdated }} as outdated
    on outdated.load_id = history.load_id and outdated.line_number = history.line_number
where outdated.load_id is null
    {%- if not keys_sql %}
    {%- for condition in in_scope %}
    and history.{{ condition }}
    {%- endfor %}
    {%- endif %}
{%- endmacro %}

{#- The pre-hooks of the outdated-rows model of state view `state_name`: record the run's
    changes (see above), then, when the run rebuilds an existing list, empty it. -#}
{% macro record_outdated_state_changes(state_name, extract, history, key, as_of_sql, columns,
                                       effective_column) -%}
    {%- set rebuild = outdated_rows_rebuild(extract, as_of_sql) -%}
    drop table if exists {{ state_changes_relation(state_name) }};
    create table {{ state_changes_relation(state_name) }} as
    {%- if not rebuild %}
    with changed as (
        select distinct {{ key }} from {{ history }}
        where load_id > {{ last_watermark(as_of_sql) }} and {{ effective_column }} <= {{ as_of_sql }}
    )

    select
        changed.{{ key }} as changed_{{ key }}
        {%- for column in [key] + (columns | reject('equalto', key) | list) %},
        state.{{ column }}
        {%- endfor %}
    from changed
    left join ({{ state_from_outdated_rows(history, this, key, columns, as_of_sql, effective_column,
                                           keys_sql='select ' ~ key ~ ' from changed',
                                           max_load_sql=last_watermark(as_of_sql)) }}) as state
        on state.{{ key }} = changed.{{ key }};
    {%- else %}
    {{ no_state_changes(key) }};
    {%- endif %}
    {{ record_state_transition(state_name, as_of_sql, rebuild) }};
    {%- if rebuild and is_incremental() %}
    delete from {{ this }};
    {%- endif %}
{%- endmacro %}

{#- The config of the outdated-rows model of state view `state_name`; arguments as for
    record_outdated_state_changes, history the staging model's name. Returns whether this
    run rebuilds the list. -#}
{% macro outdated_rows_config(state_name, extract, history, key, as_of_macro, columns, effective_column) -%}
    {{ config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=[
            "{{ record_outdated_state_changes('" ~ state_name ~ "', '" ~ extract ~ "', ref('" ~ history ~ "'), '"
                ~ key ~ "', " ~ as_of_macro ~ "(), " ~ columns ~ ", '" ~ effective_column ~ "') }}"],
        post_hook=[
            "{{ forget_watermark() }}",
            "{{ save_watermark(" ~ as_of_macro ~ "()) }}",
        ]) }}
    {{ return(outdated_rows_rebuild(extract, context[as_of_macro]())) }}
{%- endmacro %}
