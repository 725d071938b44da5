-- The regencies/cities of the current regions reference: the only valid region_code of
-- participants, employers and claims (methodology §6).
select
    region_code,
    region_name,
    level,
    province_code
from {{ ref('stg_regions') }}
where level in ('KABUPATEN', 'KOTA')
