{#- Within each partition the ranks present are exactly 1..n: no gap, no repeat. The
    partition is computed in a subquery: PostgreSQL refuses to group by a constant ('UMK'). -#}
{% test ranks_contiguous(model, column_name, partition_by='1') %}
select
    ranking,
    count(*) as ranked,
    min(ranked_value) as lowest,
    max(ranked_value) as highest,
    count(distinct ranked_value) as distinct_ranks
from (
    select {{ partition_by }} as ranking, {{ column_name }} as ranked_value
    from {{ model }}
    where {{ column_name }} is not null
) as ranked
group by ranking
having min(ranked_value) <> 1
    or max(ranked_value) <> count(*)
    or count(distinct ranked_value) <> count(*)
{% endtest %}
