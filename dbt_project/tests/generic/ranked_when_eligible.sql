{#- Every eligible entity has a rank and no ineligible one has (optionally only where
    `where` holds, e.g. rank_province is not given to provinces). -#}
{% test ranked_when_eligible(model, column_name, where_ranked='1 = 1') %}
select *
from {{ model }}
where (eligible and ({{ where_ranked }}) and {{ column_name }} is null)
   or ((not eligible or not ({{ where_ranked }})) and {{ column_name }} is not null)
{% endtest %}
