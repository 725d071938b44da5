{#- Rows with a score outside [0, 100] or a negative value, over every `*_score` and
    `*_value` column of the model (and the listed counts), in one query per mart. -#}
{% test indicator_ranges(model, non_negative=[]) %}
{%- set columns = adapter.get_columns_in_relation(model) | map(attribute='name') | list -%}
select *
from {{ model }}
where
{%- for c in columns if c.endswith('_score') %}
    {{ c }} < 0 or {{ c }} > 100 or
{%- endfor %}
{%- for c in columns if c.endswith('_value') or c in non_negative %}
    {{ c }} < 0 or
{%- endfor %}
    1 = 0
{% endtest %}
