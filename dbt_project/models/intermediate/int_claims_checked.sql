-- Current claim versions with their referential checks (methodology §6) and whether the
-- claim counts as paid for Y: current status PAID, paid_date in Y and on or before D.
with claims as (
    select * from {{ ref('int_claims_current') }}
),

kabkota as (
    select * from {{ ref('int_kabkota') }}
),

-- "kpj has a participant row of any date" without a distinct over the whole history: a
-- row effective on or before D puts the number in the states on D; rows effective after D
-- are few, and the history's older row groups are skipped by their effective dates.
participants_on_as_of as (
    select kpj from {{ ref('int_participant_state') }}
),

participants_after_as_of as (
    select distinct kpj from {{ ref('stg_participants') }} where effective_date > {{ as_of_date() }}
),

checked as (
    select
        claims.*,
        kabkota.province_code,
        kabkota.region_code is null as orphan_region,
        (participants_on_as_of.kpj is null and participants_after_as_of.kpj is null) as orphan_kpj
    from claims
    left join kabkota on kabkota.region_code = claims.region_code
    left join participants_on_as_of on participants_on_as_of.kpj = claims.kpj
    left join participants_after_as_of on participants_after_as_of.kpj = claims.kpj
)

select
    *,
    (orphan_region or orphan_kpj) as is_referential_orphan,
    (not orphan_region and not orphan_kpj
        and status = 'PAID'
        and paid_date >= {{ year_start() }}
        and paid_date <= {{ as_of_date() }}) as is_paid_for_year
from checked
