{#-
  Reading a few keys' rows out of a wide table. DuckDB can fetch rows by their row id
  without scanning the table's columns: finding the rows of the changed keys on the key
  column alone, then fetching just those rows, reads a fraction of a 50 M-row table whose
  rows are mostly the 64-character NIK token (measured at national size: 8.3 s for the
  changed participants' history rows in one pass, 2.7 s in two). Other adapters have no
  such locator; there the rows are filtered on the key directly, which is the same result.

  A row id holds only while no checkpoint rewrites the table: DuckDB 2.0 renumbers row ids
  in a checkpoint that another connection's commit sets off, even under a query that has
  found row ids and not yet fetched them (a 1.0 night's bill counts lost the first 95 rows
  of a block that moved down by 95). So the DuckDB target runs one model at a time
  (profiles.yml), and ingestion writes through one connection.
-#}

{% macro row_locator() -%}
    {{ return(adapter.dispatch('row_locator', 'paritrana')()) }}
{%- endmacro %}

{% macro default__row_locator() -%}
    {{ return(none) }}
{%- endmacro %}

{% macro duckdb__row_locator() -%}
    {{ return('rowid') }}
{%- endmacro %}

{#- A staging view over raw table `relation` exposes the raw row's locator as column
    source_row, where the adapter has one (not over a unit test's fixture, which is no table).
    In the view's source CTE: `select *{{ with_source_row(r) }} from r`; in its select list,
    after the last column: `{{ source_row_column(r) }}`. -#}
{% macro has_source_row(relation) -%}
    {{ return(row_locator() is not none and relation.type != 'cte') }}
{%- endmacro %}

{% macro with_source_row(relation) -%}
    {%- if has_source_row(relation) %}, {{ row_locator() }} as source_row{% endif -%}
{%- endmacro %}

{% macro source_row_column(relation) -%}
    {%- if has_source_row(relation) %},
        source_row{% endif -%}
{%- endmacro %}

{#- The rows of `relation` whose `key` is in the query keys_sql (and that satisfy the
    condition where_sql, on the relation's columns). locator: the relation's row-locator
    column: the adapter's own for a table, 'source_row' for a staging view. -#}
{% macro rows_for_keys(relation, key, keys_sql, locator=none, where_sql=none) -%}
    {%- set locator = locator or row_locator() -%}
    {%- set condition -%}
        {{ key }} in ({{ keys_sql }}){% if where_sql %} and {{ where_sql }}{% endif %}
    {%- endset -%}
    {%- if row_locator() -%}
    select * from {{ relation }}
    where {{ locator }} in (select {{ locator }} from {{ relation }} where {{ condition }})
    {%- else -%}
    select * from {{ relation }} where {{ condition }}
    {%- endif -%}
{%- endmacro %}
