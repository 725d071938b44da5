-- Every loaded claim version; the current state is chosen in int_claims_current.
with source as (
    select *{{ with_source_row(source('raw', 'claims')) }} from {{ source('raw', 'claims') }}
),

renamed as (
    select
        ---------- ids
        claim_id,
        claim_version,
        kpj,
        npp,
        region_code,
        ---------- attributes
        {{ closed_set('program') }} as program,
        {{ closed_set('benefit_type') }} as benefit_type,
        {{ closed_set('status') }} as status,
        ---------- dates
        submitted_date,
        paid_date,
        ---------- numerics
        amount_idr,
        ---------- lineage
        _business_date as business_date,
        _load_id as load_id,
        _line as line_number{{ source_row_column(source('raw', 'claims')) }}
    from source
)

select * from renamed
