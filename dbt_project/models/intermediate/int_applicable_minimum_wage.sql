-- The minimum wage that applies in each regency/city for Y (methodology §4): its own
-- UMK row if there is one, else its province's UMP; null when neither exists.
with kabkota as (
    select * from {{ ref('int_kabkota') }}
),

wages as (
    select * from {{ ref('stg_minimum_wages') }} where year = {{ assessment_year() }}
)

select
    kabkota.region_code,
    coalesce(umk.minimum_wage_idr, ump.minimum_wage_idr) as minimum_wage_idr,
    case when umk.minimum_wage_idr is not null then 'UMK'
         when ump.minimum_wage_idr is not null then 'UMP' end as minimum_wage_source
from kabkota
left join wages as umk on umk.region_code = kabkota.region_code
left join wages as ump on ump.region_code = kabkota.province_code
