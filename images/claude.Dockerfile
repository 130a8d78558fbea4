# The `claude` provider's agent image: the shell provider's image (the `node`
# user, /workspace) plus Claude Code's native CLI, which bot-bottle fetches
# from npm on the host (containers here reach no npm registry) and puts in
# the build context as `claude`.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY claude /usr/local/bin/claude
RUN chmod 755 /usr/local/bin/claude && /usr/local/bin/claude --version
