-- The current claims whose kpj has no participant row of any date (methodology §6,
-- `claims_kpj`): usually none or a handful. int_claims_checked joins this small table
-- instead of matching 8 M claims against 50 M participant states, which the pemda
-- indicators, the referential checks and the quality gate each did every night.
--
-- "Has a participant row of any date" is a look-up in the history's kpj column, for the
-- claims' kpjs only (the states on D are a view over that history; going through them would
-- take the outdated rows away from 50 M rows first).
--
-- Incremental: participant rows only ever arrive, so a claim with a participant stays so;
-- a nightly run rechecks only the claims int_claims_current changed and the orphans it
-- already has (a late participant row may have resolved them). It rechecks every claim
-- when the chain is broken (a full refresh, a failed run in between) or when a
-- correction has superseded a participant delivery (rows can then disappear).
{%- set mode = aggregate_config('int_claims_current', 'claim_id', 'participant_removals_fingerprint',
                                'not is_orphan') %}

with claims as (
    {%- if mode == 'delta' %}
    select candidates.claim_id, current_claims.kpj, current_claims.claim_id is not null as is_current
    from (
        select changed_claim_id as claim_id from {{ state_changes_relation('int_claims_current') }}
        union
        select claim_id from {{ this }}
    ) as candidates
    left join {{ ref('int_claims_current') }} as current_claims on current_claims.claim_id = candidates.claim_id
    {%- else %}
    select claim_id, kpj, true as is_current
    from {{ ref('int_claims_current') }}
    {% if mode == 'current' %}where 1 = 0{% endif %}
    {%- endif %}
),

participants as (
    select distinct kpj from {{ ref('stg_participants') }}
    where kpj in (select kpj from claims)
),

checked as (
    select
        claims.claim_id,
        claims.kpj,
        (claims.is_current and participants.kpj is null) as is_orphan
    from claims
    left join participants on participants.kpj = claims.kpj
)

select * from checked
where is_orphan
{%- if is_incremental() %}
    -- a stored orphan that no longer is one comes back false; the post-hook removes it
    or claim_id in (select claim_id from {{ this }})
{%- endif %}
