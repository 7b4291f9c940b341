#!/bin/bash
# Elastic Beanstalk (Amazon Linux 2 and 2023 platforms, Docker and ECS ones included): raises this instance's
# IMDSv2 hop limit before the application's containers start, so that they can reach the instance role's
# credentials. Runs the imds-hop-limit binary shipped in the bundle (bin/, one per architecture), or the
# installed one. Its exit status fails the deployment unless the environment property
# IMDS_HOP_LIMIT_ON_FAILURE is set to "continue". Prints no token: no `set -x`.
set -euo pipefail

bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ -x /usr/bin/imds-hop-limit ]; then
    agent=/usr/bin/imds-hop-limit
else
    agent=$bundle/bin/imds-hop-limit-$(uname -m)
fi
if [ ! -x "$agent" ]; then
    echo "imds-hop-limit: no binary for $(uname -m) at $agent (bundle bin/ holds x86_64 and aarch64)" >&2
    exit 1
fi

on_failure=fail
get_config=/opt/elasticbeanstalk/bin/get-config
if [ -x "$get_config" ] && value=$("$get_config" environment -k IMDS_HOP_LIMIT_ON_FAILURE 2>/dev/null); then
    on_failure=${value:-fail}
fi

status=0
"$agent" apply || status=$?
if [ "$status" -ne 0 ] && [ "$on_failure" = continue ]; then
    echo "imds-hop-limit: exit status $status; continuing because IMDS_HOP_LIMIT_ON_FAILURE=continue" >&2
    exit 0
fi
exit "$status"
