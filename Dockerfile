# syntax=docker/dockerfile:1
# One image for the CWL tools and the Dask Gateway scheduler/workers:
#   python -m cubemosaic ...   dask scheduler ...   dask worker ...
# Built from a wheel (not an editable install) with the pinned versions of constraints.txt
# (the scheduler, the workers and the CWL steps must run the same libraries), as a non-root user.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cubemosaic ./cubemosaic
COPY conf ./conf
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="cubemosaic" \
      org.opencontainers.image.description="Sentinel-2 L2A monthly cloud-free median mosaics" \
      org.opencontainers.image.source="https://github.com/cubemosaic/cubemosaic"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist /dist
COPY constraints.txt /dist/
# DL3013: the package installed is our own wheel, built above; every dependency is pinned by constraints.txt.
# hadolint ignore=DL3013
RUN wheel="$(ls /dist/cubemosaic-*.whl)" \
    && pip install --no-cache-dir --constraint /dist/constraints.txt "${wheel}[cloud]" \
    && rm -rf /dist \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin cubemosaic
USER 1000
WORKDIR /home/cubemosaic
ENV CUBEMOSAIC_DEMO_DIR=/home/cubemosaic/.cache/cubemosaic
CMD ["python", "-m", "cubemosaic", "--help"]
