{#-
  Methodology §2 and §7 for one category, as CTEs after a CTE named `reasoned` that has
  entity_code, province_code, ineligible_reason and <indicator>_value for every
  indicator of the category:
    scored  – <indicator>_score for every value that can be computed;
    totaled – eligible, total_score (empty for ineligible entities);
    ranked  – rank_national within `national_partition`, and rank_province within
              province_code for the rows where `province_rank_when` holds.
-#}
{% macro score_and_rank(category, national_partition=none, province_rank_when='1 = 1') -%}
{%- set indicators = var('methodology')['weights'][category].keys() | list -%}
{%- set first = indicators[0] -%}
scored as (
    select
        *,
        {%- for name in indicators %}
        {{ indicator_score(name ~ '_value', category, name) }} as {{ name }}_score{{ ',' if not loop.last }}
        {%- endfor %}
    from reasoned
),

totaled as (
    select
        *,
        ineligible_reason is null as eligible,
        case when ineligible_reason is null then {{ total_score(category) }} end as total_score
    from scored
),

ranked as (
    select
        *,
        case when eligible then row_number() over (
            partition by eligible{% if national_partition %}, {{ national_partition }}{% endif %}
            order by {{ round_to('total_score', 6) }} desc, {{ first }}_score desc, entity_code
        ) end as rank_national,
        case when eligible and {{ province_rank_when }} then row_number() over (
            partition by eligible{% if national_partition %}, {{ national_partition }}{% endif %}, province_code
            order by {{ round_to('total_score', 6) }} desc, {{ first }}_score desc, entity_code
        ) end as rank_province,
        {{ assessment_year() }} as year,
        {{ as_of_date() }} as as_of,
        '{{ var("config_sha256") }}' as config_sha256
    from totaled
)
{%- endmacro %}

{#- The published column list of a category (outputs.md §2), for the rankings views. -#}
{% macro ranking_columns(category, category_columns) -%}
    year,
    as_of,
    entity_code,
    entity_name,
    province_code,
    {%- for column in category_columns %}
    {{ column }},
    {%- endfor %}
    eligible,
    ineligible_reason,
    total_score,
    rank_national,
    rank_province,
    {%- for name in var('methodology')['weights'][category].keys() %}
    {{ name }}_value,
    {{ name }}_score{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
