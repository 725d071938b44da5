-- Every loaded participant row (all versions); versioning happens in int_participant_state.
with source as (
    select *{{ with_source_row(source('raw', 'participants')) }} from {{ source('raw', 'participants') }}
),

renamed as (
    select
        ---------- ids
        kpj,
        nik_token,
        npp,
        region_code,
        funder_code,
        ---------- attributes
        nik_consistent,
        birth_date,
        {{ closed_set('gender') }} as gender,
        {{ closed_set('segment') }} as segment,
        {{ closed_set('occupation') }} as occupation,
        {{ closed_set('funding') }} as funding,
        {{ closed_set('status') }} as status,
        ---------- programmes (0/1)
        jkk, jkm, jht, jp, jkp,
        ---------- numerics
        monthly_wage_idr,
        ---------- versioning and lineage
        effective_date,
        _business_date as business_date,
        _load_id as load_id,
        _line as line_number{{ source_row_column(source('raw', 'participants')) }}
    from source
)

select * from renamed
