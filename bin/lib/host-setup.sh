# shellcheck shell=bash
# Host setup shared by bin/test and bin/demo. Source it, then call vhostblk_host_setup:
#   - as root on Debian: apt-get update (once) + install the missing packages below
#   - require a JDK >= 25 (JAVA_HOME, else /usr/lib/jvm/temurin-25-jdk-amd64) and export JAVA_HOME
# vhostblk_build_if_needed runs `mvn -q -B -DskipTests package` when the backend jar is
# missing or older than any source file or pom.

VHOSTBLK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VHOSTBLK_DEB_PACKAGES=(qemu-system-x86 qemu-utils fio busybox-static linux-image-amd64 cpio kmod maven
  libvirt-daemon-system libvirt-clients)
VHOSTBLK_DEFAULT_JDK=/usr/lib/jvm/temurin-25-jdk-amd64

vhostblk_log() { echo "[host-setup] $*" >&2; }
vhostblk_die() { echo "[host-setup] ERROR: $*" >&2; exit 1; }

vhostblk_missing_packages() {
  local p
  for p in "${VHOSTBLK_DEB_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed; then
      echo "$p"
    fi
  done
}

vhostblk_install_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    vhostblk_log "not a Debian system: not installing packages (need: ${VHOSTBLK_DEB_PACKAGES[*]})"
    return 0
  fi
  local missing
  missing=$(vhostblk_missing_packages | tr '\n' ' ')
  missing=${missing% }
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    vhostblk_die "missing Debian packages: $missing -- run as root, or: sudo apt-get install -y $missing"
  fi
  if [ -z "${VHOSTBLK_APT_UPDATED:-}" ]; then
    vhostblk_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || vhostblk_die "apt-get update failed"
    export VHOSTBLK_APT_UPDATED=1
  fi
  vhostblk_log "installing: $missing"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2 \
    || vhostblk_die "apt-get install $missing failed"
  missing=$(vhostblk_missing_packages | tr '\n' ' ')
  [ -z "${missing% }" ] || vhostblk_die "still missing after apt-get install: $missing"
}

# Prints the Java feature version of the JDK at $1 (e.g. 25), or nothing.
vhostblk_jdk_version() {
  [ -x "$1/bin/java" ] && [ -x "$1/bin/javac" ] || return 0
  "$1/bin/java" -XshowSettings:properties -version 2>&1 \
    | awk -F'= ' '/^ *java.specification.version/ { v=$2; sub(/^1\./, "", v); print v; exit }'
}

vhostblk_require_jdk() {
  local v
  if [ -n "${JAVA_HOME:-}" ]; then
    v=$(vhostblk_jdk_version "$JAVA_HOME")
    if [ -n "$v" ] && [ "$v" -ge 25 ] 2>/dev/null; then
      export JAVA_HOME PATH="$JAVA_HOME/bin:$PATH"
      return 0
    fi
    vhostblk_log "JAVA_HOME=$JAVA_HOME is not a JDK >= 25 (version '${v:-none}'), trying $VHOSTBLK_DEFAULT_JDK"
  fi
  v=$(vhostblk_jdk_version "$VHOSTBLK_DEFAULT_JDK")
  if [ -n "$v" ] && [ "$v" -ge 25 ] 2>/dev/null; then
    export JAVA_HOME=$VHOSTBLK_DEFAULT_JDK
    export PATH="$JAVA_HOME/bin:$PATH"
    return 0
  fi
  vhostblk_die "vhostblk needs a JDK 25 or newer: install Temurin 25 at $VHOSTBLK_DEFAULT_JDK or point JAVA_HOME at a JDK >= 25"
}

vhostblk_host_setup() {
  vhostblk_install_packages
  vhostblk_require_jdk
  command -v mvn >/dev/null 2>&1 || vhostblk_die "mvn not found (Debian package maven)"
}

# Builds all modules (no tests) unless backend/target/vhostblk-backend.jar is newer than
# every source file and pom.
vhostblk_build_if_needed() {
  local jar="$VHOSTBLK_ROOT/backend/target/vhostblk-backend.jar" newer=""
  if [ -f "$jar" ]; then
    newer=$(find "$VHOSTBLK_ROOT" \( -name target -o -name .git \) -prune -o -type f \
      \( -name '*.java' -o -name pom.xml -o -path '*/src/main/resources/*' \) -newer "$jar" -print -quit)
    if [ -z "$newer" ]; then
      return 0
    fi
    vhostblk_log "rebuilding: $newer is newer than $jar"
  else
    vhostblk_log "building (no $jar yet)"
  fi
  (cd "$VHOSTBLK_ROOT" && mvn -q -B -DskipTests package) || vhostblk_die "build failed: (cd $VHOSTBLK_ROOT && mvn -B -DskipTests package)"
  [ -f "$jar" ] || vhostblk_die "build finished but $jar is missing"
}
