# hwbkptd in a container. No Docker engine runs in this project's CI: the image is linted
# (hadolint, in make lint) but never built or run there. Run line (README "Operate it"):
#   docker run -d --name hwbkptd --pid=host \
#     --cap-drop ALL --cap-add SYS_PTRACE --cap-add PERFMON --cap-add BPF \
#     -v /run/hwbkpt:/run/hwbkpt hwbkptd
# --pid=host: it traces the host's processes. SYS_PTRACE: seize them; PERFMON and BPF: perf
# breakpoint events and the BPF value readers. Add SYS_ADMIN only for kernel scope on kernels
# that still demand it for CPU-wide breakpoint events (perf_event_paranoid > 1 without
# PERFMON support). The socket directory is a volume, so host clients reach the broker.

# --- build: wheels of the two packages, installed with the pinned dependencies into a venv.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY deploy/requirements.txt deploy/requirements-build.txt deploy/
RUN pip install --no-cache-dir -r deploy/requirements-build.txt \
 && python -m venv /opt/hwbkpt \
 && /opt/hwbkpt/bin/pip install --no-cache-dir -r deploy/requirements.txt
COPY clients/python clients/python
COPY server server
RUN pip wheel --no-cache-dir --no-build-isolation --no-deps -w /wheels ./clients/python ./server \
 && /opt/hwbkpt/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
 && /opt/hwbkpt/bin/pip check \
 && /opt/hwbkpt/bin/pip uninstall --yes pip

# --- run: the slim base and the venv only (no compiler, no pip, no sources).
FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="hwbkptd" \
      org.opencontainers.image.description="Broker for hardware debug registers" \
      org.opencontainers.image.licenses="GPL-2.0-only"
COPY --from=build /opt/hwbkpt /opt/hwbkpt
ENV PATH=/opt/hwbkpt/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Root in the container, held to the capabilities above: tracing other users' processes
# needs CAP_SYS_PTRACE over them, which an unprivileged uid cannot be given in a way that
# survives exec of the interpreter.
VOLUME ["/run/hwbkpt"]
# The gRPC health service, asked through the broker's own socket.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["hwbkpt", "--server", "unix:/run/hwbkpt/hwbkpt.sock", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["hwbkptd"]
CMD ["--listen", "unix:/run/hwbkpt/hwbkpt.sock", "--machine", "auto", "--log-format", "json"]
