{#- The assessment year Y and as-of date D of methodology §1, from the run's vars. -#}
{% macro assessment_year() -%}
    {{ var('year') | int }}
{%- endmacro %}

{% macro as_of_iso() -%}
    {{ var('as_of') or (var('year') | string ~ '-12-31') }}
{%- endmacro %}

{% macro as_of_date() -%}
    {{ dbt.cast(dbt.string_literal(as_of_iso()), api.Column.translate_type('date')) }}
{%- endmacro %}

{% macro year_start() -%}
    {{ dbt.cast(dbt.string_literal(assessment_year() ~ '-01-01'), api.Column.translate_type('date')) }}
{%- endmacro %}

{#- A contribution bill for month M (text YYYY-MM) is due on the 15th of month M+1
    (extracts.md §3.4). -#}
{% macro bill_due_date(period_month) -%}
    {{ dbt.cast(
        dbt.dateadd('month', 1, dbt.cast(dbt.concat([period_month, "'-15'"]), api.Column.translate_type('date'))),
        api.Column.translate_type('date')) }}
{%- endmacro %}
