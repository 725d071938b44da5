{#- PostgreSQL plans from statistics that a freshly built table does not have yet
    (autovacuum analyzes it later): without them a national 0.05 build misjudged its joins
    and took 112 s, pemda_indicators alone 58 s. Each table a model builds is analyzed as
    its last step there; DuckDB keeps its statistics as it writes, and the hook renders empty. -#}
{% macro refresh_statistics() -%}
    {{ return(adapter.dispatch('refresh_statistics', 'paritrana')()) }}
{%- endmacro %}

{% macro default__refresh_statistics() -%}
{%- endmacro %}

{% macro postgres__refresh_statistics() -%}
    {%- if config.get('materialized') in ('table', 'incremental') %}analyze {{ this }}{% endif -%}
{%- endmacro %}
