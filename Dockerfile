# crm-kpi: one image for every command (worker, gateway, replay, simulate, kpis).
#   docker build -t crm-kpi .
#   docker run --rm crm-kpi crm-kpi --help
# docker-compose.yml runs it as `crm-kpi worker` and `crm-kpi gateway`.

# Build stage: install the project and its dependencies into a virtualenv, so the runtime
# image gets neither pip's cache nor the build tooling.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The compiled build (setup.py: the per-event modules through mypyc) needs a C compiler
# here only; the runtime image gets the built extension modules.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN CRMKPI_COMPILE=1 pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
# Non-root. The worker keeps its local table data under $HOME/.crm-kpi (CRMKPI_HOME), so
# the user gets a home directory; state itself lives in Kafka changelog topics.
RUN useradd --create-home --uid 10001 --user-group crmkpi
USER crmkpi
WORKDIR /home/crmkpi
# 6066: worker API and /metrics; 8080: gateway.
EXPOSE 6066 8080
CMD ["crm-kpi", "worker"]
