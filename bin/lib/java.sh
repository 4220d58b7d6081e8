# Sourced by the launchers: sets $java to a JDK >= 25 or exits with one clear line.
# Order: $JAVA_HOME, Temurin 25 at its Debian path, `java` on PATH.
vhostblk_find_java() {
    local who="$1" cand version release
    for cand in "${JAVA_HOME:+$JAVA_HOME/bin/java}" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java "$(command -v java || true)"; do
        [[ -n "$cand" && -x "$cand" ]] || continue
        release="$(dirname "$(dirname "$(readlink -f "$cand")")")/release"
        version="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release" 2>/dev/null || true)"
        if [[ -n "$version" && "$version" -ge 25 ]]; then
            java="$cand"
            return 0
        fi
    done
    echo "$who: no JDK 25 found (tried \$JAVA_HOME, /usr/lib/jvm/temurin-25-jdk-amd64, PATH); set JAVA_HOME" >&2
    exit 2
}
