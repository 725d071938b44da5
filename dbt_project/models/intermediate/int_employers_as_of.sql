-- Employer states on D with the referential check on their region (methodology §6).
with state as (
    select * from {{ ref('int_employer_state') }}
),

kabkota as (
    select * from {{ ref('int_kabkota') }}
)

select
    state.*,
    kabkota.province_code,
    kabkota.region_code is null as is_referential_orphan
from state
left join kabkota on kabkota.region_code = state.region_code
