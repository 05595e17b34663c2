# nowcast in a container: CPU build of torch, then the package (pysteps and pyproj come with it).
#   docker build -t nowcast .
#   docker run --rm -v "$PWD:/data" nowcast predict /data/radar.nc -o /data/forecast.nc
# For a GPU image, replace the torch line with a CUDA build and run with --gpus all.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1

# CPU wheel of torch first, so the project's torch range is satisfied without the multi-GB CUDA build.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/nowcast
COPY pyproject.toml README.md ./
COPY nowcast ./nowcast
COPY models ./models
COPY sample_data ./sample_data
RUN pip install . && nowcast --version

# Runs as an unprivileged user; mount data at /data.
RUN useradd --create-home nowcast
USER nowcast
WORKDIR /data
ENTRYPOINT ["nowcast"]
CMD ["--help"]
