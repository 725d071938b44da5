-- Micro enterprises (size class MIKRO): indicators U1–U3, eligibility, scores and ranks
-- (methodology §5, §7). Their participants are active participants of any segment.
with compliance as (
    select * from {{ ref('int_employer_compliance') }}
    where size_class = 'MIKRO'
),

reasoned as (
    select
        npp as entity_code,
        employer_name as entity_name,
        npp,
        size_class,
        sector,
        region_code,
        province_code,
        status,
        reported_workforce,
        participants_any_segment as participants,
        bills_for_year,
        bills_paid_by_as_of,
        arrears_months,
        case when reported_workforce > 0
                 then {{ capped_at_one(ratio('participants_any_segment', 'reported_workforce')) }}
             when participants_any_segment >= 1 then 1.0 end as enrolment_value,
        {{ ratio('bills_paid_by_as_of', 'bills_for_year') }} as payment_continuity_value,
        {{ ratio('programme_enrolments', '3 * participants_any_segment') }} as program_breadth_value,
        {{ first_failing([
            ("status <> 'ACTIVE'", 'CLOSED'),
            ('participants_any_segment = 0', 'NO_PARTICIPANTS'),
            ('bills_for_year = 0', 'NO_BILLS'),
        ]) }} as ineligible_reason
    from compliance
),

{{ score_and_rank('umk') }}

select * from ranked
