-- The provincial assessment team's rows per government and year, from that year's latest snapshot.
{{ reference_snapshot('pemda_assessment', ['has_regulation', 'apbd_allocation_idr', 'non_asn_headcount', 'innovation_score']) }}
