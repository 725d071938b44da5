-- Businesses (size classes BESAR, MENENGAH, KECIL): indicators B1–B5, flags, eligibility,
-- scores and ranks (methodology §4, §7). rank_national is within the size class.
with compliance as (
    select * from {{ ref('int_employer_compliance') }}
    where size_class in ('BESAR', 'MENENGAH', 'KECIL')
),

reasoned as (
    select
        npp as entity_code,
        employer_name as entity_name,
        *,
        {{ first_failing([
            ("status <> 'ACTIVE'", 'CLOSED'),
            ('reported_workforce = 0', 'NO_WORKFORCE'),
            ('bills_for_year = 0', 'NO_BILLS'),
            ('arrears_months > ' ~ var('methodology')['arrears_threshold'], 'ARREARS'),
            ('participants_without_minimum_wage > 0', 'MISSING_REFERENCE'),
        ]) }} as ineligible_reason
    from compliance
),

{{ score_and_rank('badan_usaha', national_partition='size_class') }}

select * from ranked
