#!/bin/bash
# EC2 user data, plain shell variant: installs imds-hop-limit on first boot (rpm on Amazon Linux, deb on
# Debian and Ubuntu, else the static binary and unit from the tarball), runs it once, and enables its unit
# for later boots. Set BASE to where you host the release artifacts (dist/ of scripts/dist). Failures stop
# the script with their exit status; no `set -x`, so no token can reach the console log.
set -euo pipefail
BASE=https://downloads.example.com/imds-hop-limit/0.1.0
VERSION=0.1.0
arch=$(uname -m)

if ! command -v imds-hop-limit >/dev/null; then
    tmp=$(mktemp -d)
    if command -v rpm >/dev/null && [ -e /etc/system-release ]; then
        rpm -U "$BASE/imds-hop-limit-$VERSION-1.$arch.rpm"
    elif command -v dpkg >/dev/null; then
        case $arch in x86_64) debarch=amd64 ;; aarch64) debarch=arm64 ;; *) echo "no package for $arch" >&2; exit 1 ;; esac
        curl -fsSL -o "$tmp/imds-hop-limit.deb" "$BASE/imds-hop-limit_$VERSION-1_$debarch.deb"
        apt-get install -y "$tmp/imds-hop-limit.deb"
    else
        name=imds-hop-limit-$VERSION-$arch-unknown-linux-musl
        curl -fsSL "$BASE/$name.tar.gz" | tar -xz -C "$tmp"
        install -m 0755 "$tmp/$name/imds-hop-limit" /usr/bin/imds-hop-limit
        install -m 0644 "$tmp/$name/imds-hop-limit.service" /etc/systemd/system/imds-hop-limit.service
        id imds-hop-limit >/dev/null 2>&1 || useradd --system --no-create-home --shell /sbin/nologin imds-hop-limit
        systemctl daemon-reload
    fi
    rm -rf "$tmp"
fi
systemctl enable imds-hop-limit.service
imds-hop-limit apply
