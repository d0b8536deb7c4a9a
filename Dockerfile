# journey-receiver: the Alertmanager webhook receiver, as a non-root container.
#
#   docker build -t journey-receiver .
#   docker run -p 9095:9095 -e WEBHOOK_TOKEN=... -v "$PWD/config:/etc/journey-receiver:ro" journey-receiver
#
# Config is read from /etc/journey-receiver/receiver.yaml (journeys.yaml beside it); mount
# your own there. Secrets come from the environment (${VAR}) or mounted files (*_file).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/journey-receiver
WORKDIR /src
# Only the runtime lock: exact versions checked by hash, nothing resolved at build time.
COPY requirements/runtime.txt requirements/runtime.txt
RUN /opt/journey-receiver/bin/pip install --no-compile --require-hashes --no-deps \
      -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY receiver ./receiver
# The build backend came from the lock above, so the package builds without fetching one.
RUN /opt/journey-receiver/bin/pip install --no-compile --no-deps --no-build-isolation . \
 && /opt/journey-receiver/bin/pip uninstall --yes setuptools

FROM python:3.11-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="journey-receiver" \
      org.opencontainers.image.description="Alertmanager webhook receiver: one business-ranked incident per customer journey, delivered to PagerDuty, Slack and Jira" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/journey-receiver/journey-receiver"
RUN groupadd --system --gid 10001 journey-receiver \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin journey-receiver
COPY --from=build /opt/journey-receiver /opt/journey-receiver
COPY config/receiver.yaml config/journeys.yaml /etc/journey-receiver/
ENV PATH=/opt/journey-receiver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 9095
# Liveness only (/healthz); readiness (/readyz, the store reachable) is the orchestrator's.
# It reads the port from the same config as the command below, so a changed server.port is
# followed; a command given its own --port needs the same --port here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["journey-receiver", "healthcheck", "--config", "/etc/journey-receiver/receiver.yaml"]
ENTRYPOINT ["journey-receiver"]
CMD ["serve", "--config", "/etc/journey-receiver/receiver.yaml"]
