-- Participant states on D with their referential checks (methodology §6): a region that
-- is not a regency/city of the reference, or a PU/JAKON npp that no employer row (of any
-- date) has. Rows failing a check are left out of every indicator downstream.
with state as (
    select * from {{ ref('int_participant_state') }}
),

kabkota as (
    select * from {{ ref('int_kabkota') }}
),

employer_npps as (
    select distinct npp from {{ ref('stg_employers') }}
),

checked as (
    select
        state.*,
        kabkota.province_code,
        kabkota.region_code is null as orphan_region,
        (state.segment in ('PU', 'JAKON') and employer_npps.npp is null) as orphan_npp
    from state
    left join kabkota on kabkota.region_code = state.region_code
    left join employer_npps on employer_npps.npp = state.npp
)

select
    *,
    (orphan_region or orphan_npp) as is_referential_orphan,
    (status = 'ACTIVE' and not orphan_region and not orphan_npp) as is_counted_active
from checked
