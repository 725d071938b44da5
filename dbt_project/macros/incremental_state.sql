{#-
  Current-row models that follow the deliveries, not the history.

  A model keeping one current row per key (a claim's current version, a bill's latest
  state; an employer's state on D, rebuilt every run) recomputes, on an incremental run,
  only the keys that a load since its last run touched, plus the keys whose current row
  came from a load that a correction has since superseded (those raw rows are gone). A
  key left with no row comes back as an `_absent` row: delete+insert replaces the stale
  row with it and the post-hook removes it. The watermark is the highest load id the
  model has seen for the run's as-of date, so changing the as-of date recomputes every
  key, and a full refresh builds the same table. A pre-hook records the changed keys
  first (state_changes.sql): the model reads them from there, and so do its key tests.
-#}

{% macro watermark_relation() -%}
    {{ generate_schema_name('intermediate', none) }}.incremental_watermarks
{%- endmacro %}

{#- Run once at the start of every dbt invocation (on-run-start), not per model: on a
    target that runs models on parallel threads (PostgreSQL's), two would race to create it. -#}
{% macro ensure_watermarks() -%}
    create schema if not exists {{ generate_schema_name('intermediate', none) }};
    create table if not exists {{ watermark_relation() }} (
        model_name varchar(200), as_of date, max_load_id bigint)
{%- endmacro %}

{% macro forget_watermark() -%}
    delete from {{ watermark_relation() }} where model_name = '{{ this.identifier }}'
{%- endmacro %}

{% macro save_watermark(as_of_sql) -%}
    insert into {{ watermark_relation() }}
    select '{{ this.identifier }}', {{ as_of_sql }}, coalesce(max(load_id), 0)
    from {{ source('raw', 'load_ledger') }}
{%- endmacro %}

{#- as_of_macro: name of the macro giving the as-of date the rows depend on; history: the
    staging model with every version; columns: the model's columns (as for
    current_row_per_key), recorded for the rows a run replaces (state_changes.sql);
    effective_column as for current_row_per_key. -#}
{% macro current_row_config(key, as_of_macro, history, columns=[], effective_column=none,
                            materialized='incremental') -%}
    {%- if materialized != 'incremental' -%}
    {{ config(materialized=materialized) }}
    {%- else -%}
    {{ config(
        materialized=materialized,
        unique_key=key,
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook=[
            "{{ record_state_changes(ref('" ~ history ~ "'), '" ~ key ~ "', " ~ as_of_macro ~ "(), "
                ~ columns ~ ", " ~ (("'" ~ effective_column ~ "'") if effective_column else "none") ~ ") }}"],
        post_hook=[
            "delete from {{ this }} where _absent",
            "{{ forget_watermark() }}",
            "{{ save_watermark(" ~ as_of_macro ~ "()) }}",
        ]) }}
    {%- endif -%}
{%- endmacro %}

{#- The loads a correction has superseded (their raw rows are gone), of one extract or all. -#}
{% macro superseded_loads(extract=none) -%}
    select load_id from {{ source('raw', 'load_ledger') }}
    where status = 'SUPERSEDED'{% if extract %} and extract = '{{ extract }}'{% endif %}
{%- endmacro %}

{% macro last_watermark(as_of_sql) -%}
    (select coalesce(max(max_load_id), 0) from {{ watermark_relation() }}
     where model_name = '{{ this.identifier }}' and as_of = {{ as_of_sql }})
{%- endmacro %}

{#- The keys an incremental run recomputes: touched by a load since the last run (for a
    state on D, by a row effective on or before D: a later one cannot change it), or whose
    current row came from a load a correction has since superseded. -#}
{% macro changed_keys(history, key, as_of_sql, effective_column=none) -%}
    select {{ key }} from {{ history }} where load_id > {{ last_watermark(as_of_sql) }}
    {%- if effective_column %} and {{ effective_column }} <= {{ as_of_sql }}{% endif %}
    union
    select {{ key }} from {{ this }}
    where load_id in ({{ superseded_loads() }})
{%- endmacro %}

{#- The versioning rule of the state extracts, winner first: the greatest effective date,
    then the later business date, then the later line (extracts.md §3.1; §3.2 says
    employers follow the same rule). -#}
{% macro state_version_order() -%}
    effective_date desc, business_date desc, line_number desc
{%- endmacro %}

{#-
  The whole select of a current-row model. history: the staging relation with every
  version; columns: what to keep (must include key and load_id); order_by: the version
  order, winner first; effective_column: for a state on the as-of date, the column a row
  must have on or before it (effective_date <= D); unique_per_load: a load has at most
  one row per key (its extract's key is unique per file, extracts.md §2: KEY_CONFLICT).
-#}
{% macro current_row_per_key(history, key, columns, order_by, as_of_sql, effective_column=none,
                             unique_per_load=false) -%}
{%- if is_incremental() %}
-- A changed key's new row is the best of its old row and the rows loaded since the last
-- run (rows only arrive), so the history is not read, except for the keys whose old row
-- came from a delivery a correction has since superseded (that row is gone).
with changed as (
    -- recorded by the pre-hook (state_changes.sql), with each key's old row
    select changed_{{ key }} as {{ key }} from {{ state_changes_relation(this.identifier) }}
),

superseded_loads as (
    {{ superseded_loads() }}
),

replaced as (
    select * from {{ state_changes_relation(this.identifier) }} where {{ key }} is not null
),

history as (
    select {{ columns | join(', ') }} from replaced
    where load_id not in (select load_id from superseded_loads)
    union all
    select {{ columns | join(', ') }} from {{ history }}
    where load_id > (select from_watermark from {{ state_transition_relation(this.identifier) }})
    union all
    select {{ columns | join(', ') }}
    from ({{ rows_for_keys(history, key,
                           'select ' ~ key ~ ' from replaced where load_id in (select load_id from superseded_loads)',
                           locator='source_row') }}) as superseded_keys
),
{%- else %}
-- Most keys have a single row, which is their current row: only the keys with several
-- rows are ranked, so the window sorts a few million rows instead of the whole history.
-- That reads the history several times, streamed: materialised, it would be written out
-- whole (int_participant_state, when it was such a table, at national 1.0: 126 s -> 241 s
-- materialised, 107 s -> 75 s streamed).
with full_history as {{ streamed_cte() }} (
    select {{ columns | join(', ') }} from {{ history }}
    {% if effective_column %}where {{ effective_column }} <= {{ as_of_sql }}{% endif %}
),

{%- if unique_per_load %}
-- A key with several rows has at most one in the largest load (the initial snapshot), so
-- it has one in another: the keys of the other loads' rows are the only candidates, found
-- without grouping the whole history by key.
load_sizes as (
    select load_id, count(*) as n from full_history group by load_id
),

largest_load as (
    select max(load_id) as load_id from load_sizes where n = (select max(n) from load_sizes)
),

several_rows as (
    select distinct {{ key }} as several_key from full_history
    where load_id <> (select load_id from largest_load)
),
{%- else %}
several_rows as (
    select {{ key }} as several_key from full_history group by {{ key }} having count(*) > 1
),
{%- endif %}

single_rows as (
    select full_history.* from full_history
    left join several_rows on several_rows.several_key = full_history.{{ key }}
    where several_rows.several_key is null
),

history as (
    select full_history.* from full_history
    join several_rows on several_rows.several_key = full_history.{{ key }}
),
{%- endif %}

ranked as (
    select
        {{ columns | join(',\n        ') }},
        row_number() over (partition by {{ key }} order by {{ order_by }}) as version_rank
    from history
    {# the full build's history is already cut at D #}
    {% if effective_column and is_incremental() %}where {{ effective_column }} <= {{ as_of_sql }}{% endif %}
),

current_rows as (
    select * from ranked where version_rank = 1
    {%- if not is_incremental() %}
    union all
    select {{ columns | join(', ') }}, 1 as version_rank from single_rows
    {%- endif %}
)

{% if is_incremental() -%}
select
    changed.{{ key }},
    {%- for column in columns if column != key %}
    current_rows.{{ column }},
    {%- endfor %}
    {{ as_of_sql }} as as_of,
    current_rows.{{ key }} is null as _absent
from changed
left join current_rows on current_rows.{{ key }} = changed.{{ key }}
{%- else -%}
select
    {{ columns | join(',\n    ') }},
    {{ as_of_sql }} as as_of,
    false as _absent
from current_rows
{%- endif %}
{%- endmacro %}

{#- A fixed as-of for current-row models whose state does not depend on D. -#}
{% macro any_as_of() -%}
    {{ dbt.cast("'1970-01-01'", api.Column.translate_type('date')) }}
{%- endmacro %}

{#- A CTE read more than once is materialised by DuckDB unless told otherwise; for a
    history of tens of millions of wide rows, reading it twice costs less than writing
    it. PostgreSQL 12+ takes the same words; elsewhere the CTE is left to the planner. -#}
{% macro streamed_cte() -%}
    {{ return(adapter.dispatch('streamed_cte', 'paritrana')()) }}
{%- endmacro %}

{% macro default__streamed_cte() -%}{%- endmacro %}

{% macro duckdb__streamed_cte() -%}not materialized{%- endmacro %}

{% macro postgres__streamed_cte() -%}not materialized{%- endmacro %}

{#- A CTE computed once, before the query that reads it: for a small set the planner would
    otherwise evaluate late, after joining the large tables it is meant to cut down.
    PostgreSQL 12+ takes the same word; elsewhere the CTE is left to the planner. -#}
{% macro materialized_cte() -%}
    {{ return(adapter.dispatch('materialized_cte', 'paritrana')()) }}
{%- endmacro %}

{% macro default__materialized_cte() -%}{%- endmacro %}

{% macro duckdb__materialized_cte() -%}materialized{%- endmacro %}

{% macro postgres__materialized_cte() -%}materialized{%- endmacro %}
