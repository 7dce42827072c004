# cx-pipeline worker / simulator image.
#   docker build -t cx-pipeline .
#   docker run --rm -e CX_BOOTSTRAP_SERVERS=kafka:9092 -p 9464:9464 cx-pipeline          # worker
#   docker run --rm -e CX_BOOTSTRAP_SERVERS=kafka:9092 cx-pipeline simulate --rate 50     # demo load
#   also `collect` (HTTP intake) and `act` (signals to webhooks); see docker-compose.yml
# Configuration is the CX_* environment (pipeline/settings.py); metrics on :9464/metrics.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CX_METRICS_HOST=0.0.0.0 \
    CX_METRICS_PORT=9464
RUN groupadd --system --gid 10001 cx \
    && useradd --system --uid 10001 --gid cx --home-dir /home/cx --create-home --shell /usr/sbin/nologin cx \
    && install -d -o cx -g cx /home/cx/act-state
COPY --from=build /opt/venv /opt/venv
USER cx
WORKDIR /home/cx
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('CX_METRICS_PORT', '9464'), timeout=4).read()"]
ENTRYPOINT ["cxpipe"]
CMD ["worker"]
