-- How current the daily deliveries are: for each delta extract (extracts.md §3.1–3.4), the
-- latest business date loaded and how many days it lies before the as-of date D. The
-- contract loads whatever arrives; a provider that stopped sending claims would otherwise
-- leave a night's indicators built on old data without a word. Each delivery for D is
-- produced after the night that computes D, so one day behind is the usual state. The
-- quality gate warns past PARITRANA_MAX_DAYS_BEHIND (README, Quality gate). No load times:
-- like every model, it depends on the deliveries alone, not on when they were loaded.
{%- set deltas = var('delta_extracts') %}

with delta_extracts as (
    {%- for name in deltas %}
    select {{ dbt.string_literal(name) }} as extract
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

loaded as (
    select
        extract,
        max(business_date) as last_business_date,
        count(*) as files_loaded
    from {{ ref('stg_load_ledger') }}
    where status = 'LOADED'
    group by extract
),

final as (
    select
        delta_extracts.extract,
        loaded.last_business_date,
        coalesce(loaded.files_loaded, 0) as files_loaded,
        {{ dbt.datediff('loaded.last_business_date', as_of_date(), 'day') }} as days_behind,
        {{ assessment_year() }} as year,
        {{ as_of_date() }} as as_of
    from delta_extracts
    left join loaded on loaded.extract = delta_extracts.extract
)

select * from final
