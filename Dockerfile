# One image for waylay's in-cluster parts, tagged twice:
#   waylay/manager  ->  python -m webhook   (traffic manager + agent-injector webhook)
#   waylay/agent    ->  python -m agent     (traffic agent sidecar)
# The pod specs waylay writes name the module in `command`, so either tag runs either part.
#
#   docker build -t waylay/manager:0.1.0 -t waylay/agent:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY agent ./agent
COPY webhook ./webhook
COPY tui ./tui
COPY sandbox ./sandbox
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# The "restricted" Pod Security Standard: never root.
USER 65532:65532
EXPOSE 8443 8081
ENTRYPOINT ["python", "-m"]
CMD ["webhook"]
