-- Participant states on D with their referential checks (methodology §6): a region that
-- is not a regency/city of the reference, or a PU/JAKON npp that no employer row (of any
-- date) has. Rows failing a check are left out of every indicator downstream.
{{ participants_checked(ref('int_participant_state')) }}
