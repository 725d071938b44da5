-- Every employer's participants, bills and compliance flags on D (methodology §4), for
-- every size class: the flags feed P6 for micro enterprises too. An employer's
-- participants here are its active PU participants; UMK's any-segment view is in
-- umk_indicators.
{{ config(materialized='table') }}

with employers as (
    select * from {{ ref('int_employers_as_of') }} where not is_referential_orphan
),

participants as (
    select * from {{ ref('int_participant_cells_as_of') }} where is_counted_active
),

bill_counts as (
    -- per npp; an employer on D always has an employer row, so its bills are not orphans
    select * from {{ ref('int_employer_bill_counts') }}
),

pu_participants as (
    select
        participants.npp,
        {{ sum_bigint('participants.participants') }} as participants,
        {{ sum_where('at_minimum_wage', 'participants.participants') }} as participants_at_minimum_wage,
        {{ sum_where('not has_minimum_wage', 'participants.participants') }} as participants_without_minimum_wage,
        {{ sum_where(enrolled_in_mandatory('participants', 'employers.size_class'), 'participants.participants') }}
            as participants_in_mandatory_programmes
    from participants
    inner join employers on employers.npp = participants.npp
    where participants.segment = 'PU'
    group by participants.npp
),

all_participants as (
    select
        npp,
        {{ sum_bigint('participants') }} as participants_any_segment,
        {{ sum_bigint('(jkk + jkm + jht) * participants') }} as programme_enrolments
    from participants
    where npp is not null
    group by npp
),

csr_funded as (
    select funder_code as npp, {{ sum_bigint('participants') }} as csr_participants
    from participants
    where funding = 'CSR'
    group by funder_code
),

joined as (
    select
        employers.npp,
        employers.employer_name,
        employers.size_class,
        employers.sector,
        employers.region_code,
        employers.province_code,
        employers.status,
        employers.reported_workforce,
        coalesce(pu_participants.participants, 0) as participants,
        coalesce(pu_participants.participants_at_minimum_wage, 0) as participants_at_minimum_wage,
        coalesce(pu_participants.participants_without_minimum_wage, 0) as participants_without_minimum_wage,
        coalesce(pu_participants.participants_in_mandatory_programmes, 0) as participants_in_mandatory_programmes,
        coalesce(all_participants.participants_any_segment, 0) as participants_any_segment,
        coalesce(all_participants.programme_enrolments, 0) as programme_enrolments,
        coalesce(csr_funded.csr_participants, 0) as csr_participants,
        coalesce(bill_counts.bills_for_year, 0) as bills_for_year,
        coalesce(bill_counts.bills_paid_on_time, 0) as bills_paid_on_time,
        coalesce(bill_counts.bills_paid_by_as_of, 0) as bills_paid_by_as_of,
        coalesce(bill_counts.arrears_months, 0) as arrears_months
    from employers
    left join pu_participants on pu_participants.npp = employers.npp
    left join all_participants on all_participants.npp = employers.npp
    left join csr_funded on csr_funded.npp = employers.npp
    left join bill_counts on bill_counts.npp = employers.npp
),

values_computed as (
    select
        *,
        {{ capped_at_one(ratio('participants', 'reported_workforce')) }} as worker_registration_value,
        case when participants = 0 then 0.0
             else {{ ratio('participants_at_minimum_wage', 'participants') }} end as wage_compliance_value,
        case when participants = 0 then 0.0
             else {{ ratio('participants_in_mandatory_programmes', 'participants') }} end as program_compliance_value,
        {{ ratio('bills_paid_on_time', 'bills_for_year') }} as contribution_timeliness_value,
        {{ ratio('csr_participants', 'reported_workforce') }} as ecosystem_extension_value
    from joined
),

flagged as (
    select
        *,
        participants < reported_workforce as pds_workers,
        wage_compliance_value < 1 as pds_wage,
        program_compliance_value < 1 as pds_program
    from values_computed
)

select
    *,
    (status = 'ACTIVE' and arrears_months = 0
        and not pds_workers and not pds_wage and not pds_program) as is_compliant
from flagged
