-- Methodology §6: per check, the current records it looks at, the orphans left out of
-- every indicator, and their share against the configured gate. The quality gate blocks
-- publication when any share is over it.
{%- set gate = var('methodology')['referential_gate'] %}

with participants as (
    select * from {{ ref('int_participant_cells_as_of') }}
),

employers as (
    select * from {{ ref('int_employers_as_of') }}
),

claims as (
    select * from {{ ref('int_claims_checked') }}
),

bill_counts as (
    select
        bill_counts.bills,
        employer_npps.npp is null as is_referential_orphan
    from {{ ref('int_employer_bill_counts') }} as bill_counts
    left join (select distinct npp from {{ ref('stg_employers') }}) as employer_npps
        on employer_npps.npp = bill_counts.npp
),

counts as (
    select 'participants_region_code' as check_name, 'participants' as checked_table,
           'region_code is not a regency/city of regions' as description,
           {{ sum_bigint('participants') }} as records,
           {{ sum_where("orphan_region", 'participants') }} as orphans
    from participants
    union all
    select 'participants_npp', 'participants', 'PU/JAKON npp has no employer row',
           {{ sum_bigint('participants') }}, {{ sum_where("orphan_npp", 'participants') }}
    from participants
    union all
    select 'employers_region_code', 'employers', 'region_code is not a regency/city of regions',
           count(*), {{ count_where("is_referential_orphan") }}
    from employers
    union all
    select 'claims_region_code', 'claims', 'region_code is not a regency/city of regions',
           count(*), {{ count_where("orphan_region") }}
    from claims
    union all
    select 'claims_kpj', 'claims', 'kpj has no participant row',
           count(*), {{ count_where("orphan_kpj") }}
    from claims
    union all
    select 'contributions_npp', 'contributions', 'npp has no employer row',
           {{ sum_bigint('bills') }}, {{ sum_where("is_referential_orphan", 'bills') }}
    from bill_counts
)

select
    check_name,
    checked_table,
    description,
    records,
    coalesce(orphans, 0) as orphans,
    coalesce({{ ratio('orphans', 'records') }}, 0.0) as orphan_share,
    cast({{ gate }} as {{ float_type() }}) as gate,
    coalesce({{ ratio('orphans', 'records') }}, 0.0) > {{ gate }} as over_gate,
    {{ assessment_year() }} as year,
    {{ as_of_date() }} as as_of,
    '{{ var("config_sha256") }}' as config_sha256
from counts
