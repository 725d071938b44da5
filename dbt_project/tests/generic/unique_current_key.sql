{#-
  The key of an incremental current-row model is unique. Delete+insert replaces every row
  of the keys a run changed and touches no other, so a run can only create a duplicate
  among those keys: when every earlier build ended green, only they are checked (a join
  with the recorded changes instead of grouping 45 M keys). A full rebuild, or a build
  after one that failed or was killed, checks every key (state_changes.sql).
-#}
{% test unique_current_key(model, column_name) %}
{%- set full_check = true -%}
{%- if execute -%}
    {%- set transition = adapter.get_relation(model.database, model.schema, model.identifier ~ '_transition') -%}
    {%- if transition is not none -%}
        {%- set full_check = run_query('select full_check from ' ~ transition).columns[0].values()[0] -%}
    {%- endif -%}
{%- endif %}
{%- set prefilter = full_check and fixed_width_hash(column_name) %}
{%- if prefilter %}
-- Every key: only the keys whose hash repeats are grouped (keys_on_several_rows;
-- int_participant_state at national 1.0, queried alone: 8.5-11.2 s -> 4.7-5.6 s). Without
-- a fixed-width hash, every key is grouped once, below.
with several_keys as (
    {{ keys_on_several_rows(model, column_name) }}
)

{% endif -%}
select rows.{{ column_name }} as unique_field, count(*) as n_records
from {{ model }} as rows
{%- if not full_check %}
inner join {{ model.database }}.{{ model.schema }}.{{ model.identifier }}_changes as changes
    on changes.changed_{{ column_name }} = rows.{{ column_name }}
{%- endif %}
where rows.{{ column_name }} is not null
{%- if prefilter %}
    and {{ several_key_of('rows.' ~ column_name) }} in (select several_key from several_keys)
{%- endif %}
group by rows.{{ column_name }}
having count(*) > 1
{% endtest %}
