-- Local governments: every province and regency/city of the regions reference, with
-- indicators P1–P7, the descriptive columns, eligibility, scores and ranks (methodology
-- §3, §7). Coverage looks at the territory (a province's is all its regencies/cities);
-- funding looks at who pays (funder_code).
{%- set territory_measures = [
    'participants_active', 'participants_active_pu', 'participants_active_bpu',
    'participants_active_jakon', 'participants_active_pmi',
    'claims_paid_count', 'claims_paid_idr', 'death_benefit_count', 'death_benefit_idr',
    'scholarship_children', 'scholarship_idr',
    'employers_active', 'employers_assessed', 'employers_compliant'] %}

with regions as (
    select * from {{ ref('stg_regions') }}
),

kabkota as (
    select * from {{ ref('int_kabkota') }}
),

participants as (
    select * from {{ ref('int_participant_cells_as_of') }} where is_counted_active
),

paid_claims as (
    select * from {{ ref('int_claims_checked') }} where is_paid_for_year
),

employers as (
    select * from {{ ref('int_employer_compliance') }}
),

workforce as (
    select * from {{ ref('stg_workforce') }} where year = {{ assessment_year() }}
),

assessment as (
    select * from {{ ref('stg_pemda_assessment') }} where year = {{ assessment_year() }}
),

participants_by_region as (
    select
        region_code,
        {{ sum_bigint('participants') }} as participants_active,
        {{ sum_where("segment = 'PU'", 'participants') }} as participants_active_pu,
        {{ sum_where("segment = 'BPU'", 'participants') }} as participants_active_bpu,
        {{ sum_where("segment = 'JAKON'", 'participants') }} as participants_active_jakon,
        {{ sum_where("segment = 'PMI'", 'participants') }} as participants_active_pmi
    from participants
    group by region_code
),

claims_by_region as (
    select
        region_code,
        count(*) as claims_paid_count,
        {{ sum_bigint('amount_idr') }} as claims_paid_idr,
        {{ count_where("benefit_type = 'DEATH_BENEFIT'") }} as death_benefit_count,
        {{ sum_bigint("case when benefit_type = 'DEATH_BENEFIT' then amount_idr else 0 end") }} as death_benefit_idr,
        {{ count_where("benefit_type = 'SCHOLARSHIP'") }} as scholarship_children,
        {{ sum_bigint("case when benefit_type = 'SCHOLARSHIP' then amount_idr else 0 end") }} as scholarship_idr
    from paid_claims
    group by region_code
),

employers_by_region as (
    select
        region_code,
        {{ count_where("status = 'ACTIVE'") }} as employers_active,
        {{ count_where("status = 'ACTIVE' and bills_for_year > 0") }} as employers_assessed,
        {{ count_where("status = 'ACTIVE' and bills_for_year > 0 and is_compliant") }}
            as employers_compliant
    from employers
    group by region_code
),

kabkota_measures as (
    select
        kabkota.region_code,
        kabkota.province_code,
        {%- for m in territory_measures %}
        coalesce({{ m }}, 0) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from kabkota
    left join participants_by_region on participants_by_region.region_code = kabkota.region_code
    left join claims_by_region on claims_by_region.region_code = kabkota.region_code
    left join employers_by_region on employers_by_region.region_code = kabkota.region_code
),

territory as (
    select
        region_code as entity_code,
        {%- for m in territory_measures %}
        {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from kabkota_measures
    union all
    select
        province_code as entity_code,
        {%- for m in territory_measures %}
        {{ sum_bigint(m) }} as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from kabkota_measures
    group by province_code
),

funded as (
    select
        funder_code as entity_code,
        {{ sum_where("occupation in " ~ non_asn_occupations(), 'participants') }} as non_asn_funded,
        {{ sum_where("funding = 'APBD' and occupation not in " ~ non_asn_occupations(), 'participants') }}
            as apbd_funded
    from participants
    where funding in ('APBD', 'APBDES')
    group by funder_code
),

entities as (
    select
        regions.region_code as entity_code,
        regions.region_name as entity_name,
        regions.province_code,
        regions.level,
        case when regions.level = 'PROVINSI' then 'PROVINSI' else 'KABKOTA' end as ranking_group,
        {%- for m in territory_measures %}
        coalesce(territory.{{ m }}, 0) as {{ m }},
        {%- endfor %}
        coalesce(funded.non_asn_funded, 0) as non_asn_funded,
        coalesce(funded.apbd_funded, 0) as apbd_funded,
        workforce.employed,
        workforce.informal_employed,
        assessment.region_code is not null as has_assessment,
        assessment.has_regulation,
        assessment.apbd_allocation_idr,
        assessment.non_asn_headcount,
        -- the panel's 0–100 score; `innovation_score` is P7's score column
        assessment.innovation_score as panel_innovation_score
    from regions
    left join territory on territory.entity_code = regions.region_code
    left join funded on funded.entity_code = regions.region_code
    left join workforce on workforce.region_code = regions.region_code
    left join assessment on assessment.region_code = regions.region_code
),

reasoned as (
    select
        *,
        {{ ratio('participants_active', 'employed') }} as coverage_value,
        {{ ratio('participants_active_bpu', 'informal_employed') }} as vulnerable_coverage_value,
        case when not has_assessment then null
             when non_asn_headcount > 0 then {{ capped_at_one(ratio('non_asn_funded', 'non_asn_headcount')) }}
             when non_asn_funded = 0 then 0.0
             else 1.0 end as non_asn_coverage_value,
        {{ ratio('apbd_funded', 'informal_employed') }} as apbd_support_value,
        cast(has_regulation as {{ float_type() }}) as regulation_value,
        case when employers_assessed = 0 then 1.0
             else {{ ratio('employers_compliant', 'employers_assessed') }} end as employer_compliance_value,
        panel_innovation_score / 100.0 as innovation_value,
        case when employed is null or employed <= 0 or informal_employed is null or informal_employed <= 0
                  or not has_assessment
             then 'MISSING_REFERENCE' end as ineligible_reason
    from entities
),

{{ score_and_rank('pemda', national_partition='ranking_group', province_rank_when="level <> 'PROVINSI'") }}

select * from ranked
