# Shared by scripts/*: install missing Debian packages, so a fresh machine needs nothing by hand.

# ensure_packages CMD:PACKAGE ... installs PACKAGE when CMD is not on PATH (or, for a name
# ending in "-dev", when the package is not installed).
ensure_packages() {
  local missing=() spec cmd pkg
  for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    if [[ $pkg == *-dev ]]; then
      dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    else
      command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    fi
  done
  ((${#missing[@]})) || return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What building Seawall needs: cmake for pingora-core's zlib-ng, OpenSSL headers for the TLS backend,
# make for the vendored OpenSSL.
BUILD_PACKAGES=(cmake:cmake make:make pkg-config:pkg-config libssl-dev:libssl-dev)
