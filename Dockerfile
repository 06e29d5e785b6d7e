# The headrace processes (learn, serve, simulate) for docker-compose.yml.
# Kafka and Redis come from their own images there.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs, so tests, local stack data and .venv stay out
# of the image and an edit to them does not invalidate the install layer.
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY learner ./learner
COPY api ./api
COPY snapshots ./snapshots
COPY guards ./guards
COPY headrace ./headrace
RUN pip install . \
    && useradd --create-home --uid 10001 headrace

USER headrace
EXPOSE 8000
CMD ["headrace", "serve"]
