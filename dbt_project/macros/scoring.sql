{#- Methodology §2: score_i = 100 × min(v_i / t_i, 1); total = Σ w_i × score_i / Σ w_i.
    Weights and targets come from the validated configuration (var methodology). -#}
{% macro indicator_score(value, category, indicator) -%}
    {%- set target = var('methodology')['targets'][category][indicator] -%}
    case when {{ value }} is null then null
         when {{ value }} >= {{ target }} then 100.0
         else 100.0 * {{ value }} / {{ target }} end
{%- endmacro %}

{% macro total_score(category) -%}
    {%- set weights = var('methodology')['weights'][category] -%}
    ({% for name, w in weights.items() %}{{ w }} * {{ name }}_score{% if not loop.last %} + {% endif %}{% endfor %})
    / {{ weights.values() | sum }}.0
{%- endmacro %}

{#- num ÷ den as a float, null when the denominator is not positive (a zero denominator
    never becomes a value of 0 or an error). Casting avoids integer division on
    PostgreSQL. -#}
{% macro ratio(num, den) -%}
    case when {{ den }} > 0 then cast({{ num }} as {{ float_type() }}) / ({{ den }}) end
{%- endmacro %}

{% macro capped_at_one(expr) -%}
    case when {{ expr }} > 1 then 1.0 else {{ expr }} end
{%- endmacro %}

{#- round(total, 6) of the tie order (§7). PostgreSQL has no round(double, int), so
    the portable form casts to numeric; DuckDB rounds doubles directly. -#}
{% macro round_to(expr, digits) -%}
    {{ return(adapter.dispatch('round_to', 'paritrana')(expr, digits)) }}
{%- endmacro %}

{% macro default__round_to(expr, digits) -%}
    round(cast({{ expr }} as numeric(38, 12)), {{ digits }})
{%- endmacro %}

{% macro duckdb__round_to(expr, digits) -%}
    round({{ expr }}, {{ digits }})
{%- endmacro %}

{#- The first failing reason of an ordered list [(condition, code), ...], else null. -#}
{% macro first_failing(reasons) -%}
    case {% for condition, code in reasons %}when {{ condition }} then '{{ code }}' {% endfor %}end
{%- endmacro %}

{#- A double-precision float: `float` is 4 bytes on DuckDB but 8 on PostgreSQL. -#}
{% macro float_type() -%}
    {{ return(adapter.dispatch('float_type', 'paritrana')()) }}
{%- endmacro %}

{% macro default__float_type() -%}double precision{%- endmacro %}

{% macro duckdb__float_type() -%}double{%- endmacro %}

{#- Counts and money sums as bigint on every adapter (DuckDB's sum() returns int128). -#}
{% macro count_where(condition) -%}
    cast(sum(case when {{ condition }} then 1 else 0 end) as {{ dbt.type_bigint() }})
{%- endmacro %}

{#- The sum of a count column over the rows meeting a condition (counts kept per cell). -#}
{% macro sum_where(condition, count_column) -%}
    cast(sum(case when {{ condition }} then {{ count_column }} else 0 end) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro sum_bigint(expr) -%}
    cast(sum({{ expr }}) as {{ dbt.type_bigint() }})
{%- endmacro %}
