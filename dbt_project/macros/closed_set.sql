{#-
  A column of one of the contract's closed sets (gender, segment, status, ...) as text.
  Raw tables store these as DuckDB ENUMs (ingestion/raw_schema.py: a far cheaper write at
  national size); the models work on their text, so that column types, sorting, hashing
  and the published files stay the same in every warehouse, whichever type its raw tables
  have (those made before 0.3 hold text), and on every adapter.
-#}
{% macro closed_set(column) -%}
    {{ dbt.cast(column, dbt.type_string()) }}
{%- endmacro %}
