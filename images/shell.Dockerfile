# The `shell` provider's agent image: the base with a `node` user (uid 1000)
# and a workspace it owns. Any CLI can be bottled on top of it.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash node \
    && mkdir -p /workspace && chown node:node /workspace
WORKDIR /workspace
