{#- Within each partition the ranks present are exactly 1..n: no gap, no repeat. -#}
{% test ranks_contiguous(model, column_name, partition_by='1') %}
select
    {{ partition_by }} as ranking,
    count(*) as ranked,
    min({{ column_name }}) as lowest,
    max({{ column_name }}) as highest,
    count(distinct {{ column_name }}) as distinct_ranks
from {{ model }}
where {{ column_name }} is not null
group by {{ partition_by }}
having min({{ column_name }}) <> 1
    or max({{ column_name }}) <> count(*)
    or count(distinct {{ column_name }}) <> count(*)
{% endtest %}
