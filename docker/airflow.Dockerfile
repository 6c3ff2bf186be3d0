# The Airflow image: Airflow 3.3 with the providers we use, the project's dags/ and plugins/, and pony_tasks (light
# tasks — quality gates, promotion, planning — run in the Airflow worker; heavy stages run in worker-image pods when
# PONY_EXECUTION_TARGET=kubernetes). Build from the repository root:
#   docker build -f docker/airflow.Dockerfile -t pony-airflow:latest .
FROM apache/airflow:3.3.2-python3.11

USER root
RUN mkdir -p /opt/pony && chown airflow: /opt/pony
USER airflow
WORKDIR /opt/pony
COPY --chown=airflow: constraints.txt pyproject.toml README.md ./
COPY --chown=airflow: pony_tasks ./pony_tasks
# The Airflow side needs the quality stack and the providers, not torch: local execution of GPU stages is for
# development; production sets PONY_EXECUTION_TARGET=kubernetes.
RUN pip install --no-cache-dir -c constraints.txt ".[airflow,quality]"
# Data Docs' scripts and styles, served by the UI plugin: the pages render on a cluster without internet access.
ENV PONY_DOCS_ASSETS=/opt/pony/docs-assets
RUN pony quality docs-assets
COPY --chown=airflow: dags /opt/airflow/dags
COPY --chown=airflow: plugins /opt/airflow/plugins
