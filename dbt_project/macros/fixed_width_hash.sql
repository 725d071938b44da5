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
