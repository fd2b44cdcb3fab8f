#!/usr/bin/env bash
# Builds tulipd_<version>_<arch>.deb with dpkg-deb from a release build: /usr/bin/tulipd (Swift
# runtime linked statically, so the package needs no toolchain), the units of systemd/ under
# /lib/systemd/system, /etc/tulipd/tulipd.json as a conffile, maintainer scripts that reload systemd
# and enable the socket units. Prints the .deb's path last. Then checks it with lintian (errors fail).
#
#   packaging/build-deb.sh [--skip-build] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

skip_build=0
out=.build-deb
while [ $# -gt 0 ]; do
    case "$1" in
        --skip-build) skip_build=1 ;;
        --out) out="$2"; shift ;;
        *) echo "usage: $0 [--skip-build] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done

version=$(cat packaging/VERSION)
arch=$(dpkg --print-architecture)
if [ "$skip_build" -eq 0 ]; then
    swift build -c release --static-swift-stdlib --product tulipd >&2
fi
binary=$(swift build -c release --static-swift-stdlib --show-bin-path)/tulipd
[ -x "$binary" ] || { echo "no release build at $binary" >&2; exit 1; }

mkdir -p "$out"
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/tulipd" \
    "$root/usr/share/doc/tulipd" "$root/usr/share/man/man8"
install -m 0755 "$binary" "$root/usr/bin/tulipd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/tulipd"
sockets=""
for unit in systemd/*.service systemd/*.socket; do
    [ -e "$unit" ] || continue
    install -m 0644 "$unit" "$root/lib/systemd/system/"
    case "$unit" in
        *@*) ;;
        *.socket) sockets="$sockets $(basename "$unit")" ;;
    esac
done
sockets=${sockets# }
[ -n "$sockets" ] || { echo "no socket units in systemd/" >&2; exit 1; }
install -m 0644 packaging/tulipd.json "$root/etc/tulipd/tulipd.json"
gzip -9n < packaging/tulipd.8 > "$root/usr/share/man/man8/tulipd.8.gz"
chmod 0644 "$root/usr/share/man/man8/tulipd.8.gz"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/tulipd/copyright"
sed "s/@VERSION@/$version/" packaging/debian/changelog.in | gzip -9n > "$root/usr/share/doc/tulipd/changelog.gz"
chmod 0644 "$root/usr/share/doc/tulipd/changelog.gz"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    sed "s/@SOCKETS@/$sockets/g" "packaging/debian/$script" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
done

# The shared libraries tulipd links, as dpkg-shlibdeps finds them.
mkdir -p "$stage/debian"
printf 'Source: tulipd\n\nPackage: tulipd\nArchitecture: any\n' > "$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O -e root/usr/bin/tulipd 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "dpkg-shlibdeps found no dependencies" >&2; exit 1; }
depends="$depends, init-system-helpers (>= 1.52), systemd"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    packaging/debian/control.in > "$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"

deb="$out/tulipd_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
if command -v lintian >/dev/null; then
    # Errors fail the build; warnings are shown.
    lintian --fail-on error --tag-display-limit 0 "$deb" >&2
fi
echo "$deb"
