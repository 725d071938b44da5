{#-
  What an incremental run of a current-row model changed, for the aggregates kept up to
  date from it (int_participant_cells) instead of being recounted from 45 M rows a night.

  Before the model replaces its changed keys, a pre-hook saves those keys with their old
  rows in <model>_changes, and the step it makes in <model>_transition: from the watermark
  of its last run to the current one, for the as-of date. A run that builds the model from
  scratch records a full rebuild instead, and the aggregates then rebuild too. Both tables
  are bookkeeping: overwritten on every run, read only by the aggregates' next build.
-#}

{% macro state_changes_relation(model_name) -%}
    {{ generate_schema_name('intermediate', none) }}.{{ model_name }}_changes
{%- endmacro %}

{% macro state_transition_relation(model_name) -%}
    {{ generate_schema_name('intermediate', none) }}.{{ model_name }}_transition
{%- endmacro %}

{#- The pre-hook of every incremental current-row model (current_row_config); history,
    key and as_of_sql as for current_row_per_key. columns: the model's columns, saved for
    the rows the run replaces (the old row of each changed key, null for a new key): the
    model picks each changed key's new row among its old one and the rows loaded since,
    and the aggregates take the old rows' attributes away. effective_column: see
    current_row_per_key. -#}
{% macro record_state_changes(history, key, as_of_sql, columns=[], effective_column=none) -%}
    {%- set incremental = is_incremental() -%}
    drop table if exists {{ state_changes_relation(this.identifier) }};
    create table {{ state_changes_relation(this.identifier) }} as
    {%- if incremental %}
    with changed as (
        {{ changed_keys(history, key, as_of_sql, effective_column) }}
    )

    select
        changed.{{ key }} as changed_{{ key }}
        {%- for column in ([key] + (columns | reject('equalto', key) | list) if columns else []) %},
        state.{{ column }}
        {%- endfor %}
    from changed
    {%- if columns %}
    left join ({{ rows_for_keys(this, key, 'select ' ~ key ~ ' from changed') }}) as state
        on state.{{ key }} = changed.{{ key }}
    {%- endif %};
    {%- else %}
    {{ no_state_changes(key) }};
    {%- endif %}
    {{ record_state_transition(this.identifier, as_of_sql, rebuild=not incremental) }}
{%- endmacro %}

{#- The changes table of a run that rebuilds: no key, the aggregates rebuild too. -#}
{% macro no_state_changes(key) -%}
    select {{ dbt.cast('null', api.Column.translate_type('string')) }} as changed_{{ key }}
    where 1 = 0
{%- endmacro %}

{#- The run's step for state `state_name` (<state>_transition): from the watermark of its
    last run (0 when this run rebuilds) to the current one, for the as-of date. -#}
{% macro record_state_transition(state_name, as_of_sql, rebuild) -%}
    drop table if exists {{ state_transition_relation(state_name) }};
    create table {{ state_transition_relation(state_name) }} as
    select
        {{ '0' if rebuild else last_watermark(as_of_sql) }} as from_watermark,
        (select coalesce(max(load_id), 0) from {{ source('raw', 'load_ledger') }}) as to_watermark,
        {{ as_of_sql }} as as_of,
        {{ 'true' if rebuild else 'false' }} as full_rebuild,
        -- key tests look at the changed keys only when every build before this one ended
        -- green (build_outcome); otherwise at every key
        {{ 'true' if rebuild else 'false' }}
            or (select not previous_passed from {{ build_outcome_relation() }}) as full_check
{%- endmacro %}

{#-
  How an aggregate of a recorded model brings itself up to date: 'delta' when it reflects
  exactly the state the model's last run started from (apply the recorded changes),
  'current' when it already reflects the state the run ended at (nothing to do), else
  'full' (rebuilt from the whole state). basis_fingerprint_sql: a query giving a fingerprint
  of the reference data the aggregate's cells depend on; a change forces 'full'.
-#}
{% macro aggregate_mode(model_name, basis_fingerprint_sql) -%}
    {%- if not execute or not is_incremental() -%}
        {{ return('full') }}
    {%- endif -%}
    {%- set basis = adapter.get_relation(this.database, this.schema, this.identifier ~ '_basis') -%}
    {%- if basis is none -%}
        {{ return('full') }}
    {%- endif -%}
    {%- set query -%}
        select
            transition.full_rebuild
                or transition.as_of <> basis.as_of
                or basis.reference_fingerprint <> ({{ basis_fingerprint_sql }}) as must_rebuild,
            basis.state_watermark = transition.to_watermark as is_current,
            basis.state_watermark = transition.from_watermark as follows
        from {{ state_transition_relation(model_name) }} as transition
        cross join {{ basis }} as basis
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- if rows | length != 1 or rows[0][0] -%}
        {{ return('full') }}
    {%- elif rows[0][1] -%}
        {{ return('current') }}
    {%- elif rows[0][2] -%}
        {{ return('delta') }}
    {%- endif -%}
    {{ return('full') }}
{%- endmacro %}

{#- The rows an aggregate of model_name adds up, as `columns` plus a weight: in 'delta'
    mode the rows the model's last run replaced (-1) and their new rows (+1); otherwise
    every row of the model (+1), or none in 'current' mode. new_rows_sql: the model's rows
    of the changed keys, where reading them from the model by key is not the way (a view). -#}
{% macro weighted_rows(mode, model_name, key, columns, new_rows_sql=none) -%}
    {%- if mode == 'delta' %}
    select {{ columns | join(', ') }}, -1 as weight
    from {{ state_changes_relation(model_name) }}
    where {{ key }} is not null
    union all
    select {{ columns | join(', ') }}, 1 as weight
    from ({{ new_rows_sql or rows_for_keys(ref(model_name), key,
                                           'select changed_' ~ key ~ ' from ' ~ state_changes_relation(model_name)) }})
        as replacing
    {%- else %}
    select {{ columns | join(', ') }}, 1 as weight
    from {{ ref(model_name) }}
    {% if mode == 'current' %}where 1 = 0{% endif %}
    {%- endif %}
{%- endmacro %}

{#- The aggregate's new rows from `counted` (key, dimensions, measures summed over the
    weighted rows): in 'delta' mode added to the stored ones; in a rebuild in place, rows no
    longer there come back with zero measures (the aggregate's post-hook removes them). -#}
{% macro updated_counts(mode, key, dimensions, measures) -%}
    {%- if mode == 'delta' %}
    select
        counted.{{ key }},
        {%- for d in dimensions %}
        counted.{{ d }},
        {%- endfor %}
        {%- for m in measures %}
        counted.{{ m }} + coalesce(stored.{{ m }}, 0) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from counted
    left join {{ this }} as stored on stored.{{ key }} = counted.{{ key }}
    {%- else %}
    select * from counted
    {%- if mode == 'full' and is_incremental() %}
    union all
    select {{ ([key] + dimensions) | join(', ') }}{% for m in measures %}, 0 as {{ m }}{% endfor %}
    from {{ this }}
    where {{ key }} not in (select {{ key }} from counted)
    {%- endif %}
    {%- endif %}
{%- endmacro %}

{#- The config of an aggregate that follows model `followed` (int_participant_cells,
    int_employer_bill_counts, int_claim_kpj_orphans): incremental on `key`, its rows where
    `removed_when` holds deleted after each run, and what it reflects saved. fingerprint:
    the name of the macro giving its basis fingerprint (see aggregate_mode). Returns the
    mode of this run. -#}
{% macro aggregate_config(followed, key, fingerprint, removed_when) -%}
    {{ config(
        materialized='incremental',
        unique_key=key,
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "delete from {{ this }} where " ~ removed_when,
            "{{ save_aggregate_basis('" ~ followed ~ "', " ~ fingerprint ~ "()) }}",
        ]) }}
    {%- set mode = aggregate_mode(followed, context[fingerprint]()) -%}
    {%- do log(this.identifier ~ ': ' ~ mode, info=execute) -%}
    {{ return(mode) }}
{%- endmacro %}

{#- The post-hook of such an aggregate: what it now reflects. -#}
{% macro save_aggregate_basis(model_name, basis_fingerprint_sql) -%}
    {%- set basis = this.incorporate(path={'identifier': this.identifier ~ '_basis'}) %}
    drop table if exists {{ basis }};
    create table {{ basis }} as
    select
        transition.as_of,
        transition.to_watermark as state_watermark,
        ({{ basis_fingerprint_sql }}) as reference_fingerprint
    from {{ state_transition_relation(model_name) }} as transition
{%- endmacro %}


{#-
  Whether the previous dbt build ended with every node green. on-run-start moves `passed`
  to `previous_passed` and clears it; on-run-end sets it from the results. A build killed
  midway never sets it, so the next one checks every key again.
-#}
{% macro build_outcome_relation() -%}
    {{ generate_schema_name('intermediate', none) }}.build_outcome
{%- endmacro %}

{% macro start_build_outcome() -%}
    create table if not exists {{ build_outcome_relation() }} (previous_passed boolean, passed boolean);
    insert into {{ build_outcome_relation() }}
    select false, false where not exists (select 1 from {{ build_outcome_relation() }});
    update {{ build_outcome_relation() }} set previous_passed = passed, passed = false
{%- endmacro %}

{#- Any dbt run may change the marts, a build by hand included: the stamp of the build a gate
    validated (paritrana/builds.py) no longer describes them, so it is forgotten when a run
    starts, and paritrana's own build writes it again when dbt succeeds. -#}
{% macro forget_build_stamp() -%}
    delete from {{ source('raw', 'warehouse_settings') }} where name = 'last_build'
{%- endmacro %}

{% macro record_build_outcome(results) -%}
    {%- set failed = [] -%}
    {%- for result in results if result.status not in ('success', 'pass') -%}
        {%- do failed.append(result) -%}
    {%- endfor %}
    update {{ build_outcome_relation() }} set passed = {{ 'false' if failed or not results else 'true' }}
{%- endmacro %}


{#- Participant deliveries a correction has superseded: their rows are gone, so a kpj may
    have lost its last row (int_claim_kpj_orphans rechecks every claim when this changes). -#}
{% macro participant_removals_fingerprint() -%}
    select {{ dbt.cast('count(*)', api.Column.translate_type('string')) }}
    from ({{ superseded_loads('participants') }}) as superseded
{%- endmacro %}
