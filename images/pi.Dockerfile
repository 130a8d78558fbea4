# The `pi` provider's agent image: the shell provider's image plus Node.js's
# official build and pi (@mariozechner/pi-coding-agent) with its
# dependencies, which bot-bottle installs on the host from the lockfile in
# images/pi/ (containers here reach no npm registry) and puts in the build
# context as `node` and `pi.tar`.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY node /usr/local/bin/node
ADD pi.tar /opt/pi/
RUN chmod 755 /usr/local/bin/node \
    && ln -s /opt/pi/node_modules/.bin/pi /usr/local/bin/pi \
    && pi --version
