# hwbkptd in a container. Not built in this project's CI (no Docker engine there); linted by hadolint.
# Run it with the capabilities the mechanisms need, sharing the host's pid namespace so it can
# trace host processes:
#   docker run --rm --pid=host --cap-add SYS_PTRACE --cap-add PERFMON --cap-add SYS_ADMIN \
#     -v /run/hwbkpt:/run/hwbkpt hwbkptd
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="hwbkptd" \
      org.opencontainers.image.description="Broker for hardware debug registers" \
      org.opencontainers.image.licenses="GPL-2.0-only"

WORKDIR /opt/hwbkpt
COPY clients/python /opt/hwbkpt/clients/python
COPY server /opt/hwbkpt/server

RUN pip install --no-cache-dir ./clients/python ./server

VOLUME ["/run/hwbkpt"]
ENTRYPOINT ["hwbkptd"]
CMD ["--listen", "unix:/run/hwbkpt/hwbkpt.sock", "--machine", "auto", "--log-format", "json"]
