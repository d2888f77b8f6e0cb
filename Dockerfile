# The one image of the deployment: Airflow's components and task pods, and the Dask scheduler
# and workers of every run (same Python, dask and pyarrow on the client and the cluster).
#   docker build -t ghcr.io/example/events-lake:0.1.0 .
#   docker push ghcr.io/example/events-lake:0.1.0
# Pin the base by digest in your registry mirror: python:3.11.14-slim-bookworm@sha256:...
# Keep it on the latest patch release: the delivery workflow's scan fails on fixable HIGH or
# CRITICAL vulnerabilities, which an old base brings (3.11.7 dates from 2023).
FROM python:3.11.14-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /opt/events-lake
# dependencies first (cached until uv.lock changes), exactly as locked, without dev tools
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra airflow --no-install-project
COPY processing ./processing
COPY dags ./dags
RUN uv sync --frozen --no-dev --extra airflow

FROM python:3.11.14-slim-bookworm
RUN groupadd --gid 10001 events && useradd --uid 10001 --gid 10001 --no-create-home events
COPY --from=build --chown=10001:10001 /opt/events-lake /opt/events-lake
ENV PATH=/opt/events-lake/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/events-lake/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
WORKDIR /opt/events-lake
USER 10001:10001
# no entrypoint: Kubernetes gives each container its command (airflow ..., dask worker ...)
CMD ["python", "-m", "processing", "--help"]
