-- Latest bill states judged as of D (bills_judged: counts for Y, paid by D, on time, in
-- arrears), with the referential check on npp (methodology §6).
with judged as (
    {{ bills_judged(ref('int_bills_current')) }}
),

employer_npps as (
    select distinct npp from {{ ref('stg_employers') }}
)

select
    judged.*,
    employer_npps.npp is null as is_referential_orphan
from judged
left join employer_npps on employer_npps.npp = judged.npp
