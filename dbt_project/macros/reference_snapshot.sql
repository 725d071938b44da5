{#- A yearly reference (workforce, minimum wages, pemda assessment): per year, the rows of
    the delivery with the latest business date that contains that year. Each delivery is a
    full snapshot of the years it contains (extracts.md §3.5), whatever the arrival order. -#}
{% macro reference_snapshot(table, columns) -%}
with source as (
    select * from {{ source('raw', table) }}
),

snapshot_per_year as (
    select year, max(_business_date) as snapshot_date
    from source
    group by year
),

renamed as (
    select
        source.region_code,
        source.year,
        {%- for column in columns %}
        source.{{ column }},
        {%- endfor %}
        source._business_date as business_date,
        source._load_id as load_id
    from source
    inner join snapshot_per_year
        on source.year = snapshot_per_year.year
        and source._business_date = snapshot_per_year.snapshot_date
)

select * from renamed
{%- endmacro %}

{#- The rows of `cte` (a reference's rows, read from `relation`) whose business date is
    the latest: regions, whose latest delivery is the whole reference (extracts.md §3.5).
    DuckDB plans what joins the result best with the date as a scalar subquery (as a join,
    the employers' compliance took 0.4 s and the build 230-270 MB more at national 1.0).
    PostgreSQL runs such a subquery as an InitPlan and reads a CTE named twice as a
    materialised one, and either keeps every query joining the regions (the 45 M
    participants') on one core. -#}
{% macro latest_delivery(cte, relation) -%}
    {{ return(adapter.dispatch('latest_delivery', 'paritrana')(cte, relation)) }}
{%- endmacro %}

{% macro default__latest_delivery(cte, relation) -%}
    select {{ cte }}.*
    from {{ cte }}
    inner join (select max(_business_date) as business_date from {{ relation }}) as newest
        on {{ cte }}._business_date = newest.business_date
{%- endmacro %}

{% macro duckdb__latest_delivery(cte, relation) -%}
    select * from {{ cte }}
    where _business_date = (select max(_business_date) from {{ cte }})
{%- endmacro %}
