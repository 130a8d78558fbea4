# The `codex` provider's agent image: the shell provider's image plus Codex's
# native CLI and the code-mode host it runs commands through, which
# bot-bottle fetches from npm on the host and puts in the build context.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY codex codex-code-mode-host /usr/local/bin/
RUN chmod 755 /usr/local/bin/codex /usr/local/bin/codex-code-mode-host && /usr/local/bin/codex --version
