-- BPS labour force survey per region for each year, from that year's latest snapshot.
{{ reference_snapshot('workforce', ['employed', 'informal_employed']) }}
