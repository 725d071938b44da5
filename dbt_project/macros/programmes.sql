{#- Occupations of non-civil-servant government staff (extracts.md §3.1), used by P3/P4. -#}
{% macro non_asn_occupations() -%}
    ('GURU_HONORER', 'PERANGKAT_DESA', 'RT_RW', 'NON_ASN_LAIN')
{%- endmacro %}

{#- True when participant alias p is enrolled in every mandatory programme of the size
    class in column size_class_expr (methodology §4, configurable). -#}
{% macro enrolled_in_mandatory(p, size_class_expr) -%}
    case {{ size_class_expr }}
    {%- for size_class, programmes in var('methodology')['mandatory_programmes'].items() %}
        when '{{ size_class }}' then {% for prog in programmes %}{{ p }}.{{ prog }} = 1{% if not loop.last %} and {% endif %}{% endfor %}
    {%- endfor %}
        else false end
{%- endmacro %}
