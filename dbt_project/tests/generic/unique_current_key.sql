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
{%- set key_hash = fixed_width_hash('rows.' ~ column_name) if full_check else none %}
{%- if key_hash %}
-- Every key: grouping them builds a hash table of 50 M keys; sorting a 64-bit hash of
-- each and comparing neighbours finds the few hashes that repeat, and only the keys
-- behind those are grouped (int_participant_state at national 1.0, queried alone: 8.5-11.2 s
-- -> 4.7-5.6 s).
with hashes as (
    select {{ key_hash }} as key_hash from {{ model }} as rows
    where rows.{{ column_name }} is not null
),

repeated_hashes as (
    select key_hash from (
        select key_hash, lag(key_hash) over (order by key_hash) as previous_hash from hashes
    ) as sorted_hashes
    where key_hash = previous_hash
)

{% endif -%}
select rows.{{ column_name }} as unique_field, count(*) as n_records
from {{ model }} as rows
{%- if not full_check %}
inner join {{ model.database }}.{{ model.schema }}.{{ model.identifier }}_changes as changes
    on changes.changed_{{ column_name }} = rows.{{ column_name }}
{%- endif %}
where rows.{{ column_name }} is not null
{%- if key_hash %}
    and {{ key_hash }} in (select key_hash from repeated_hashes)
{%- endif %}
group by rows.{{ column_name }}
having count(*) > 1
{% endtest %}
