-- The regions reference: the delivery with the latest business date is the reference
-- (extracts.md §3.5), whatever order deliveries arrived in.
with source as (
    select * from {{ source('raw', 'regions') }}
),

-- The table again, not the CTE, and a join, not `where _business_date = (select max(...))`:
-- PostgreSQL materialises a CTE named twice and runs such a subquery as an InitPlan, and
-- either keeps every query that joins the regions (the 45 M participants' among them)
-- from running in parallel
newest as (
    select max(_business_date) as business_date from {{ source('raw', 'regions') }}
),

latest as (
    select source.*
    from source
    inner join newest on source._business_date = newest.business_date
),

renamed as (
    select
        region_code,
        name as region_name,
        {{ closed_set('level') }} as level,
        case when level = 'PROVINSI' then region_code else parent_code end as province_code,
        parent_code,
        _business_date as business_date,
        _load_id as load_id
    from latest
)

select * from renamed
