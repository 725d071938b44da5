{#- The assessment year Y and as-of date D of methodology §1.

    `paritrana` gives them in the environment (PARITRANA_YEAR, PARITRANA_AS_OF), not as
    --vars: dbt parses the whole project again whenever its command-line vars change
    (3–6 s), and D changes every night. They are read only when SQL is compiled to run
    (`execute`), never while dbt parses, so a night reuses the saved parse. A var, when
    set, wins: unit tests' overrides, and dbt run by hand with --vars '{year: 2024}'. -#}
{% macro run_setting(name) -%}
    {%- if var(name, none) is not none -%}
        {{ return(var(name) | string) }}
    {%- elif not execute -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(env_var('PARITRANA_' ~ name | upper, '')) }}
{%- endmacro %}

{% macro assessment_year() -%}
    {%- set year = run_setting('year') -%}
    {%- if execute and not year -%}
        {{ exceptions.raise_compiler_error(
            "no assessment year: `paritrana` sets PARITRANA_YEAR; by hand, pass --vars '{year: 2024}'") }}
    {%- endif -%}
    {{ year | int }}
{%- endmacro %}

{% macro as_of_iso() -%}
    {{ run_setting('as_of') or (assessment_year() ~ '-12-31') }}
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
