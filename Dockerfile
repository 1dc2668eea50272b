# The Wardrobe image: one image for every role of the Compose stack (compose.yaml), chosen by the
# command: `serve` (default), `worker`, `scheduler`, `migrate`, `nginx-config`, `admin ...`.
#
#   docker build -t wardrobe .
#
# From mainland China, where Docker Hub and files.pythonhosted.org are often unreachable:
#
#   docker build -t wardrobe \
#     --build-arg BASE_REGISTRY=docker.m.daocloud.io \
#     --build-arg PYPI_INDEX=https://pypi.tuna.tsinghua.edu.cn/simple .
#
# BASE_REGISTRY is any mirror that serves Docker Hub's library images under the same names (a
# registry-mirrors entry in /etc/docker/daemon.json does the same for every image, and is the
# better fix: docs/operations.md, "Deploy with Docker Compose"). PYPI_INDEX is any PyPI mirror
# (Tsinghua https://pypi.tuna.tsinghua.edu.cn/simple, Aliyun https://mirrors.aliyun.com/pypi/simple,
# Tencent https://mirrors.cloud.tencent.com/pypi/simple). No `# syntax=` line: BuildKit would fetch
# that frontend image from Docker Hub, past BASE_REGISTRY.

ARG BASE_REGISTRY=docker.io
ARG PYTHON_IMAGE=library/python:3.12.8-slim-bookworm

# --- builder: the locked environment in /opt/venv ---------------------------------------------
FROM ${BASE_REGISTRY}/${PYTHON_IMAGE} AS builder

# uv as dev.py pins it, from PyPI (or the mirror): no second registry to reach.
ARG UV_VERSION=0.13.9
ARG PYPI_INDEX=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN pip install ${PYPI_INDEX:+--index-url "$PYPI_INDEX"} "uv==${UV_VERSION}"

WORKDIR /build
# Dependencies first, in their own layer: a change of source alone does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
# Without a mirror: `uv sync --locked` (fails if uv.lock does not match pyproject.toml).
# With one: uv writes the mirror's URL into the resolution, so --locked would refuse the lock; the
# same lock is exported with every artifact's sha256 instead and installed from the mirror with
# --require-hashes, which accepts only the very files uv.lock names.
RUN if [ -z "$PYPI_INDEX" ]; then \
        uv sync --locked --no-dev --no-install-project; \
    else \
        uv export --locked --no-dev --no-emit-project --format requirements.txt -o /tmp/requirements.txt \
        && uv venv /opt/venv \
        && uv pip install --python /opt/venv/bin/python --require-hashes --index-url "$PYPI_INDEX" \
            -r /tmp/requirements.txt; \
    fi
COPY src ./src
# The project itself, not editable: the runtime stage needs /opt/venv only, not /build.
RUN if [ -z "$PYPI_INDEX" ]; then \
        uv sync --locked --no-dev --no-editable; \
    else \
        uv pip install --python /opt/venv/bin/python --no-deps --index-url "$PYPI_INDEX" .; \
    fi

# --- runtime: the venv, nothing else -----------------------------------------------------------
FROM ${BASE_REGISTRY}/${PYTHON_IMAGE} AS runtime

# A fixed uid/gid, so named volumes and bind mounts can be prepared for it (chown 10001:10001).
RUN groupadd --system --gid 10001 wardrobe \
    && useradd --system --uid 10001 --gid wardrobe --home-dir /var/lib/wardrobe --shell /usr/sbin/nologin wardrobe \
    && install -d -o wardrobe -g wardrobe -m 0750 /var/lib/wardrobe /etc/wardrobe/nginx

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WARDROBE_HOST=0.0.0.0 \
    WARDROBE_PORT=8000 \
    WARDROBE_VAR_DIR=/var/lib/wardrobe

USER wardrobe:wardrobe
WORKDIR /var/lib/wardrobe
EXPOSE 8000

# Liveness of the API (the default command). The slim image has no curl; Python is there. Compose
# gives the worker and the scheduler their own check (their /health on WARDROBE_METRICS_PORT).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('WARDROBE_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["wardrobe"]
CMD ["serve"]
