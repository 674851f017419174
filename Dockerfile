# One image for the API and every worker: the grader package, torch as the Makefile pins it (TORCH_SPEC), and
# bubblewrap, the sandbox in which uploaded checkpoints are read and students' code is run.
#
#   docker build -t grader .                      (or: buildah bud --format docker -t grader .)
#
# The default command, `grader api`, serves the API on 0.0.0.0:8000 (GRADER_HOST, GRADER_PORT); a worker runs
# `grader worker --queues cpu,regrade` or `grader worker --queues gpu`; the schema comes from `grader db upgrade`.
# Behind a TLS-inspecting proxy, hand pip the proxy's CA bundle at build time (buildah and podman mount it):
#   buildah bud -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt ...
# The CIFAR-10 test set is not in the image: mount it and point GRADER_CIFAR10_ROOT at it (README, "Deployment").

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# pip's CA bundle and package index, only for the build; empty means pip's own defaults (PyPI, certifi).
ARG PIP_CERT=
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
# Empty: the Makefile's TORCH_SPEC, so the image runs the torch the tests ran.
ARG TORCH_SPEC=

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_INPUT=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Debian's python3 is 3.11 (pyproject needs >= 3.11). bubblewrap: without it, student-code mode refuses to run.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv bubblewrap \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/grader/venv

# Empty build arguments are dropped rather than handed to pip as empty values (an empty PIP_CERT is no bundle).
COPY Makefile /tmp/grader-build/Makefile
RUN set -eu; \
    for name in PIP_CERT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do \
        [ -n "$(printenv "$name")" ] || unset "$name"; \
    done; \
    spec="${TORCH_SPEC:-$(sed -n 's/^TORCH_SPEC ?= *//p' /tmp/grader-build/Makefile)}"; \
    [ -n "$spec" ] || { echo "no TORCH_SPEC in the Makefile" >&2; exit 1; }; \
    /opt/grader/venv/bin/pip install $spec

COPY pyproject.toml README.md /tmp/grader-build/
COPY grader /tmp/grader-build/grader
COPY worker /tmp/grader-build/worker
RUN set -eu; \
    for name in PIP_CERT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do \
        [ -n "$(printenv "$name")" ] || unset "$name"; \
    done; \
    /opt/grader/venv/bin/pip install /tmp/grader-build \
    && rm -rf /tmp/grader-build

# The rubrics are data read at run time; the package's default (beside the source tree) does not exist here.
COPY rubrics /opt/grader/rubrics

# A fixed uid, so that volumes shared with other machines (uploads over NFS) agree on the owner.
RUN useradd --uid 10001 --user-group --home-dir /var/lib/grader --no-create-home --shell /usr/sbin/nologin grader \
    && install -d -o grader -g grader -m 0750 /var/lib/grader \
    && install -d -o grader -g grader -m 0755 /var/lib/grader/storage

ENV PATH=/opt/grader/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/grader \
    GRADER_DATA_DIR=/var/lib/grader \
    GRADER_STORAGE_DIR=/var/lib/grader/storage \
    GRADER_RUBRICS_DIR=/opt/grader/rubrics \
    GRADER_HOST=0.0.0.0 \
    GRADER_PORT=8000 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER grader
WORKDIR /var/lib/grader
EXPOSE 8000

# For the API: liveness with a database round trip. No proxy for loopback. Workers serve no HTTP: their compose
# services disable this check (their liveness is the heartbeat that /ready and the dashboard show).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/api/v1/health' % os.environ.get('GRADER_PORT', '8000'), timeout=8)"]

CMD ["grader", "api"]
