-- Every loaded employer row (all versions); versioning happens in int_employer_state.
with source as (
    select * from {{ source('raw', 'employers') }}
),

renamed as (
    select
        ---------- ids
        npp,
        region_code,
        ---------- attributes
        name as employer_name,
        {{ closed_set('size_class') }} as size_class,
        {{ closed_set('sector') }} as sector,
        {{ closed_set('status') }} as status,
        ---------- numerics
        reported_workforce,
        ---------- versioning and lineage
        effective_date,
        _business_date as business_date,
        _load_id as load_id,
        _line as line_number
    from source
)

select * from renamed
