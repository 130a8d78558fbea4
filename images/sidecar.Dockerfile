# The sidecar (and the shim): the bot-bottle binary on the project's base,
# which already carries git, ssh and the CA roots.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY bot-bottle /usr/local/bin/bot-bottle
ENTRYPOINT ["/usr/local/bin/bot-bottle"]
