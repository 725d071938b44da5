-- The regions reference: the delivery with the latest business date is the reference
-- (extracts.md §3.5), whatever order deliveries arrived in.
with source as (
    select * from {{ source('raw', 'regions') }}
),

latest as (
    {{ latest_delivery('source', source('raw', 'regions')) }}
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
