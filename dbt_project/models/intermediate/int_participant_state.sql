-- Each participant's state on D: its row with the greatest effective_date <= D; between
-- equal effective dates the later business date wins, then the later line (extracts.md
-- §3.1). Participants with no row effective on or before D do not exist for Y.
--
-- A view: the participant rows on or before D minus the outdated ones that
-- int_participant_outdated_rows lists (outdated_rows.sql). Reading every state costs about
-- 2 s more at national size than scanning a table of them; building that table cost 45-56 s.
{{ config(materialized='view') }}
{%- set columns = participant_state_columns() %}

{{ state_from_outdated_rows(ref('stg_participants'), ref('int_participant_outdated_rows'), 'kpj', columns,
                            as_of_date(), 'effective_date') }}
