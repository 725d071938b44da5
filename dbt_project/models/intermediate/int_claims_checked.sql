-- Current claim versions with their referential checks (methodology §6) and whether the
-- claim counts as paid for Y: current status PAID, paid_date in Y and on or before D.
with claims as (
    select * from {{ ref('int_claims_current') }}
),

kabkota as (
    select * from {{ ref('int_kabkota') }}
),

participant_kpjs as (
    select kpj from {{ ref('int_participant_keys') }}
),

checked as (
    select
        claims.*,
        kabkota.province_code,
        kabkota.region_code is null as orphan_region,
        participant_kpjs.kpj is null as orphan_kpj
    from claims
    left join kabkota on kabkota.region_code = claims.region_code
    left join participant_kpjs on participant_kpjs.kpj = claims.kpj
)

select
    *,
    (orphan_region or orphan_kpj) as is_referential_orphan,
    (not orphan_region and not orphan_kpj
        and status = 'PAID'
        and paid_date >= {{ year_start() }}
        and paid_date <= {{ as_of_date() }}) as is_paid_for_year
from checked
