-- The load ledger as the models read it: one row per file ingestion handled and its
-- outcome. Only what the marts need; analysts read raw.load_ledger for the rest.
with source as (
    select * from {{ source('raw', 'load_ledger') }}
),

renamed as (
    select
        load_id,
        extract,
        business_date,
        status
    from source
)

select * from renamed
