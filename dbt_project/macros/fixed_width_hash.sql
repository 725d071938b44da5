{#- A 64-bit hash of a value, where the warehouse has a cheap one; none elsewhere, where
    the test groups the keys themselves (dbt.hash's 32-character text would sort slower
    than the keys). -#}
{% macro fixed_width_hash(expr) -%}
    {{ return(adapter.dispatch('fixed_width_hash', 'paritrana')(expr)) }}
{%- endmacro %}

{% macro default__fixed_width_hash(expr) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro duckdb__fixed_width_hash(expr) -%}
    {{ return('hash(' ~ expr ~ ')') }}
{%- endmacro %}

{#-
  The keys of `relation` that occur on several rows, as column several_key, for a
  full build to pick out the few keys it must rank. Grouping 50 M keys builds a hash
  table of them; where the adapter has a fixed-width hash, sorting the keys' hashes and
  comparing neighbours is quicker (the participants' history at national 1.0: 8.0-9.5 s ->
  5.2-6.3 s for int_participant_outdated_rows' query), and several_key is then the hash: a
  key on a single row whose hash collides with another key's is taken as well, and is
  ranked alone, which leaves the result as it was. Match rows with
  `several_key_of(<the row's key>)`.
-#}
{% macro keys_on_several_rows(relation, key) -%}
{%- set key_hash = fixed_width_hash(key) -%}
{%- if key_hash -%}
select distinct several_key from (
    select several_key, several_key = lag(several_key) over (order by several_key) as repeated
    from (select {{ key_hash }} as several_key from {{ relation }} where {{ key }} is not null) as hashes
) as sorted_hashes
where repeated
{%- else -%}
select {{ key }} as several_key from {{ relation }} where {{ key }} is not null
group by {{ key }} having count(*) > 1
{%- endif -%}
{%- endmacro %}

{% macro several_key_of(key_sql) -%}
{{ fixed_width_hash(key_sql) or key_sql }}
{%- endmacro %}
