# The control plane and the worker (and the one-shot that renders the gateway's nginx config),
# installed as `make run` installs them: Debian's packages, then the project in a venv.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 python3-venv make ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tollgate
COPY . /opt/tollgate
RUN make install && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/tollgate/.venv/bin:$PATH \
    TOLLGATE_HOME=/var/lib/tollgate
VOLUME /var/lib/tollgate
CMD ["tollgate", "up", "--role", "control"]
