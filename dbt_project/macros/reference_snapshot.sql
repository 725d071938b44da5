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
