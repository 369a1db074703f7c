# syntax=docker/dockerfile:1
# One image for callrouter's long-running commands: `serve` (the controller), `web` (the
# supervisors' and engineers' service) and `records deliver` (the delivery worker), chosen by the
# command (docker-compose.yml, docs/deploy.md). The image holds no plan, no settings and no secret:
# they are mounted or given as CALLROUTER_* variables when it runs.
#
#   docker build -t callrouter:0.1.0 .
#
# Python's own slim image on Debian 12 (bookworm), the Debian release docs/deploy.md installs on.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the locked dependencies and the project, into a virtualenv -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/callrouter
WORKDIR /src
# Runtime dependencies only, exactly as locked: every file is checked against its hash
# (requirements.lock: `pip-compile --generate-hashes --extra fast`, see docs/deploy.md).
COPY requirements.lock ./
RUN /opt/callrouter/bin/pip install --require-hashes --no-deps -r requirements.lock
# The project itself, with no dependency resolution of its own (they are all above). Its build
# backend (setuptools) is fetched for this stage only and is not in the final image.
COPY pyproject.toml README.md LICENSE ./
COPY callrouter/ callrouter/
COPY web/ web/
COPY routing/ routing/
COPY records/ records/
COPY ivr/ ivr/
COPY emulator/ emulator/
COPY agi_scripts/ agi_scripts/
# The dialplans ship in the wheel too (pyproject.toml data-files): `callrouter simulate` runs
# calls through them.
COPY dialplans/ dialplans/
RUN /opt/callrouter/bin/pip install --no-deps . \
    && /opt/callrouter/bin/pip check

# --- run: the virtualenv on a clean base, as an unprivileged user ------------------------------
FROM ${PYTHON_IMAGE}
ARG CALLROUTER_UID=10001
RUN groupadd --system --gid "${CALLROUTER_UID}" callrouter \
    && useradd --system --uid "${CALLROUTER_UID}" --gid callrouter --no-create-home \
        --home-dir /var/lib/callrouter --shell /usr/sbin/nologin callrouter \
    && install -d -o callrouter -g callrouter -m 0750 /var/lib/callrouter \
        /var/lib/callrouter/journal /var/lib/callrouter/archive /var/lib/callrouter/crm-files
COPY --from=build /opt/callrouter /opt/callrouter
COPY deploy/docker/healthcheck.py /usr/local/bin/callrouter-healthcheck
ENV PATH=/opt/callrouter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    CALLROUTER_OPS_PORT=9100
WORKDIR /var/lib/callrouter
# FastAGI (serve), the web service (web), the ops listener (serve, records deliver).
EXPOSE 4573 8080 9100
USER ${CALLROUTER_UID}:${CALLROUTER_UID}
# Liveness: the ops listener's /health on loopback (serve and records deliver; `web` is given its
# own check in docker-compose.yml). /health, not /ready: a draining controller is alive.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/callrouter-healthcheck"]
# SIGTERM drains: /ready says 503 at once, calls in progress finish (agi.drain_timeout_s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["callrouter"]
CMD ["serve"]
