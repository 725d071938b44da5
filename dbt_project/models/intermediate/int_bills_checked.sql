-- Latest bill states judged as of D (methodology §1, extracts.md §3.4): a bill counts for
-- Y when its month is in Y and it is due on or before D; a payment dated after D was
-- unpaid on D; on time means fully paid on or before the due date.
with bills as (
    select * from {{ ref('int_bills_current') }}
),

employer_npps as (
    select distinct npp from {{ ref('stg_employers') }}
),

judged as (
    select
        bills.*,
        employer_npps.npp is null as is_referential_orphan,
        bills.due_date <= {{ as_of_date() }} as is_due,
        (bills.paid_date is not null and bills.paid_date <= {{ as_of_date() }}) as is_paid_by_as_of,
        (bills.paid_date is not null and bills.paid_date <= bills.due_date
            and bills.paid_date <= {{ as_of_date() }}) as is_paid_on_time
    from bills
    left join employer_npps on employer_npps.npp = bills.npp
)

select
    *,
    (period_year = {{ assessment_year() }} and is_due) as counts_for_year,
    (is_due and not is_paid_by_as_of) as is_in_arrears
from judged
