FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fieldstream ./fieldstream
RUN pip install --no-cache-dir .
RUN mkdir -p /data/lake /data/worker
CMD ["fieldstream", "worker", "-l", "info"]
