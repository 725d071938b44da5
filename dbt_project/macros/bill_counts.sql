{#- Bill rows (relation `rows`) judged as of D (methodology §1, extracts.md §3.4): a
    bill counts for Y when its month is in Y and it is due on or before D; a payment dated
    after D was unpaid on D; on time means fully paid on or before the due date. Shared by
    int_bills_checked (one row per bill) and int_employer_bill_counts (counts per npp). -#}
{% macro bills_judged(rows) -%}
    select
        *,
        period_year = {{ assessment_year() }} and is_due as counts_for_year,
        is_due and not is_paid_by_as_of as is_in_arrears
    from (
        select
            bills.*,
            bills.due_date <= {{ as_of_date() }} as is_due,
            (bills.paid_date is not null and bills.paid_date <= {{ as_of_date() }}) as is_paid_by_as_of,
            (bills.paid_date is not null and bills.paid_date <= bills.due_date
                and bills.paid_date <= {{ as_of_date() }}) as is_paid_on_time
        from {{ rows }} as bills
    ) as judged
{%- endmacro %}

{#- The columns of a bill its judgement reads (int_bills_current records them for the rows
    a run replaces). -#}
{% macro bill_judged_attributes() -%}
    {{ return(['npp', 'period_year', 'due_date', 'paid_date']) }}
{%- endmacro %}

{#- The bill counts of int_employer_bill_counts depend on D and Y besides the bills. -#}
{% macro bill_counts_fingerprint() -%}
    select {{ dbt.string_literal(as_of_iso() ~ '|' ~ assessment_year()) }}
{%- endmacro %}
