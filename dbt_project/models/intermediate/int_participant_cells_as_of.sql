-- The participant cells on D with the referential checks of int_participants_as_of
-- (methodology §6), judged per cell: every participant of a cell shares its region and
-- npp. The indicators sum `participants` over the cells that are counted active.
{{ participants_checked(ref('int_participant_cells')) }}
