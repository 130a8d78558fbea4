# The demo's git upstream (git.demo.test): sshd serving bare repos under
# /srv/git, logging in root with the demo's key only.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /run/sshd /srv/git
CMD ["/usr/sbin/sshd", "-D", "-e", "-f", "/demo/sshd_config"]
