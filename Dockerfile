# The Airflow image with Paritrana Warehouse installed, for docker-compose.yml.
# The base tag must match apache-airflow in requirements.lock (tests/test_dag.py,
# test_compose_agrees_with_the_lock_and_the_dag).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 . /opt/paritrana
# The lock pins the same apache-airflow as the image, so pip keeps Airflow as it is and
# adds dbt, Great Expectations, DuckDB and the rest at their locked versions.
# (The official image already carries the Celery and PostgreSQL providers.)
RUN pip install --no-cache-dir -r /opt/paritrana/requirements.lock \
 && pip install --no-cache-dir --no-deps -e /opt/paritrana
WORKDIR /opt/paritrana
