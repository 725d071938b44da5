{#- Eligible entities have a total score and no ineligibility reason; ineligible ones have
    a reason and an empty total (methodology §7). -#}
{% test eligible_has_total(model, column_name) %}
select *
from {{ model }}
where ({{ column_name }} and (total_score is null or ineligible_reason is not null))
   or (not {{ column_name }} and (total_score is not null or ineligible_reason is null))
{% endtest %}
