#!/usr/bin/env bash
# Builds (once) a free-threaded CPython 3.13 from Debian's python3.13 source package (suite trixie)
# and prints the path of its interpreter. The build is cached per user, outside the clone:
# ${TETHER_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether/cpython-3.13t}. A second run takes
# no time. Nothing here needs root: apt runs against a private state directory.
set -euo pipefail

cache="${TETHER_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether/cpython-3.13t}"
py="$cache/bin/python3.13t"
if [[ -x "$py" ]] && "$py" -c 'import sys; sys.exit(sys._is_gil_enabled())' 2>/dev/null; then
    echo "$py"
    exit 0
fi

work="$cache.build"
rm -rf "$work"
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
cat > "$work/apt/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
apt_opts=(
    -o "Dir::Etc::SourceList=$work/apt/sources.list"
    -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$work/apt/lists"
    -o "Dir::Cache=$work/apt/cache"
    -o "Debug::NoLocking=1"
)
echo "ft_python: fetching python3.13 sources (Debian trixie) into $work" >&2
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work" && apt-get "${apt_opts[@]}" -qq source --download-only python3.13/trixie >&2)
tarball=$(ls "$work"/python3.13_*.orig.tar.xz | head -1)
mkdir -p "$work/src"
tar -xJf "$tarball" -C "$work/src" --strip-components=1
echo "ft_python: building $(basename "$tarball") with --disable-gil (about 5 minutes)" >&2
(
    cd "$work/src"
    ./configure --disable-gil --prefix="$cache" --without-ensurepip -q >&2
    make -s -j"$(nproc)" >&2
    make -s install >&2
)
"$py" -m ensurepip >/dev/null
"$py" -c 'import sys; assert not sys._is_gil_enabled(), "the build has a GIL"'
rm -rf "$work"
echo "$py"
