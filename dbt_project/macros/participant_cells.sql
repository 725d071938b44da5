{#- The columns of a participant state (int_participant_state): the raw row's, lineage
    included. -#}
{% macro participant_state_columns() -%}
    {{ return(['kpj', 'nik_token', 'nik_consistent', 'birth_date', 'gender', 'segment', 'npp',
               'region_code', 'occupation', 'funding', 'funder_code', 'jkk', 'jkm', 'jht', 'jp',
               'jkp', 'monthly_wage_idr', 'status', 'effective_date', 'business_date',
               'load_id', 'line_number']) }}
{%- endmacro %}

{#- The columns of a participant state that decide its cell (int_participant_cells). -#}
{% macro participant_cell_attributes() -%}
    {{ return(['region_code', 'npp', 'segment', 'status', 'funding', 'funder_code', 'occupation',
               'jkk', 'jkm', 'jht', 'jp', 'jkp', 'monthly_wage_idr']) }}
{%- endmacro %}

{#- The columns of a cell: the attributes, the wage judged instead of the wage itself. -#}
{% macro participant_cell_dimensions() -%}
    {{ return(participant_cell_attributes() | reject('equalto', 'monthly_wage_idr') | list
              + ['has_minimum_wage', 'at_minimum_wage']) }}
{%- endmacro %}

{#- The parts of a text key over nullable columns: a null differs from every value. -#}
{% macro cell_key_parts(columns) -%}
    {%- set parts = [] -%}
    {%- for c in columns -%}
        {%- do parts.append("coalesce(" ~ dbt.cast(c, api.Column.translate_type('string')) ~ ", '~')") -%}
        {%- if not loop.last %}{% do parts.append("'|'") %}{% endif -%}
    {%- endfor -%}
    {{ return(parts) }}
{%- endmacro %}

{#- Participant states (alias rows, with a weight column) as cell attributes: the state's
    own attributes plus its wage judged against the minimum wage of its region (needs a
    `minimum_wage` relation in scope: int_applicable_minimum_wage). -#}
{% macro participant_cell_rows(rows) -%}
    select
        {%- for column in participant_cell_attributes() if column != 'monthly_wage_idr' %}
        {{ rows }}.{{ column }},
        {%- endfor %}
        minimum_wage.minimum_wage_idr is not null as has_minimum_wage,
        coalesce({{ rows }}.monthly_wage_idr >= minimum_wage.minimum_wage_idr, false) as at_minimum_wage,
        {{ rows }}.weight
    from {{ rows }}
    left join minimum_wage on minimum_wage.region_code = {{ rows }}.region_code
{%- endmacro %}

{#- A fingerprint of the minimum wages applying on D: the wage judgement of participant
    cells depends on them. -#}
{% macro minimum_wage_fingerprint() -%}
    select {{ dbt.hash(dbt.listagg(
        dbt.concat(["region_code", "'='",
                    "coalesce(" ~ dbt.cast('minimum_wage_idr', api.Column.translate_type('string')) ~ ", '')"]),
        "','", "order by region_code")) }}
    from {{ ref('int_applicable_minimum_wage') }}
{%- endmacro %}

{#- Participant rows (states or cells) of relation `rows` with the referential checks of
    methodology §6 and `is_counted_active`: a region that is not a regency/city of the
    reference, or a PU/JAKON npp that no employer row (of any date) has. -#}
{% macro participants_checked(rows) -%}
with checked as (
    select
        participants.*,
        kabkota.province_code,
        kabkota.region_code is null as orphan_region,
        (participants.segment in ('PU', 'JAKON') and employer_npps.npp is null) as orphan_npp
    from {{ rows }} as participants
    left join {{ ref('int_kabkota') }} as kabkota on kabkota.region_code = participants.region_code
    left join (select distinct npp from {{ ref('stg_employers') }}) as employer_npps
        on employer_npps.npp = participants.npp
)

select
    *,
    (orphan_region or orphan_npp) as is_referential_orphan,
    (status = 'ACTIVE' and not orphan_region and not orphan_npp) as is_counted_active
from checked
{%- endmacro %}
