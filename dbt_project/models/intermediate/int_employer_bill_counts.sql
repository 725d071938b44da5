-- Each npp's bills judged as of D, counted: how many it has, how many count for Y, were
-- paid on time, were paid by D, and how many months it is in arrears. One row per npp
-- (840 thousand at national size) instead of 20 M bills; int_employer_compliance and the
-- referential checks read these counts.
--
-- Incremental like int_participant_cells: a nightly run subtracts the judgement of the
-- bill rows int_bills_current replaced and adds that of their new rows, for the npps they
-- touch. It rebuilds from every bill when the chain is broken (a full refresh, a failed
-- run in between) or when D or Y change (the judgement depends on them).
{%- set mode = aggregate_config('int_bills_current', 'npp', 'bill_counts_fingerprint', 'bills = 0') %}
{%- set counts = {
    'bills': 'true',
    'bills_for_year': 'counts_for_year',
    'bills_paid_on_time': 'counts_for_year and is_paid_on_time',
    'bills_paid_by_as_of': 'counts_for_year and is_paid_by_as_of',
    'arrears_months': 'is_in_arrears'} %}

with signed as (
    {{ weighted_rows(mode, 'int_bills_current', 'bill_key', bill_judged_attributes()) }}
),

judged as (
    {{ bills_judged('signed') }}
),

counted as (
    select
        npp,
        {%- for name, condition in counts.items() %}
        {{ sum_where(condition, 'weight') }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from judged
    group by npp
)

{{ updated_counts(mode, 'npp', [], counts.keys() | list) }}
