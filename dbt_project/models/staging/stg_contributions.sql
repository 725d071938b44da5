-- Every loaded bill row; the latest state per bill is chosen in int_bills_current.
with source as (
    select *{{ with_source_row(source('raw', 'contributions')) }} from {{ source('raw', 'contributions') }}
),

renamed as (
    select
        ---------- ids
        {{ dbt.concat(['npp', "'|'", 'period_month']) }} as bill_key,
        npp,
        period_month,
        ---------- numerics
        workers_billed,
        billed_idr,
        paid_idr,
        ---------- dates
        {{ dbt.cast('substring(period_month, 1, 4)', api.Column.translate_type('integer')) }} as period_year,
        {{ bill_due_date('period_month') }} as due_date,
        paid_date,
        ---------- lineage
        _business_date as business_date,
        _load_id as load_id,
        _line as line_number{{ source_row_column(source('raw', 'contributions')) }}
    from source
)

select * from renamed
