-- Current claim versions with their referential checks (methodology §6) and whether the
-- claim counts as paid for Y: current status PAID, paid_date in Y and on or before D.
with claims as (
    select * from {{ ref('int_claims_current') }}
),

kabkota as (
    select * from {{ ref('int_kabkota') }}
),

kpj_orphans as (
    select claim_id from {{ ref('int_claim_kpj_orphans') }}
),

checked as (
    select
        claims.*,
        kabkota.province_code,
        kabkota.region_code is null as orphan_region,
        kpj_orphans.claim_id is not null as orphan_kpj
    from claims
    left join kabkota on kabkota.region_code = claims.region_code
    left join kpj_orphans on kpj_orphans.claim_id = claims.claim_id
)

select
    *,
    (orphan_region or orphan_kpj) as is_referential_orphan,
    (not orphan_region and not orphan_kpj
        and status = 'PAID'
        and paid_date >= {{ year_start() }}
        and paid_date <= {{ as_of_date() }}) as is_paid_for_year
from checked
