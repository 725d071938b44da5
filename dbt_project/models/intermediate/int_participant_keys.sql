-- Every participant number with a loaded row of any date, and the latest load holding one:
-- "kpj has a participant row" of the referential checks (methodology §6). Incremental, so
-- a night looks at its new loads (and at numbers whose latest load a correction
-- superseded) instead of finding the distinct numbers of the whole history again.
{{ current_row_config('kpj', 'any_as_of', 'stg_participants') }}

{{ current_row_per_key(
    history=ref('stg_participants'),
    key='kpj',
    columns=['kpj', 'load_id'],
    order_by='load_id desc',
    as_of_sql=any_as_of()) }}
