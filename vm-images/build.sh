#!/usr/bin/env bash
# Build the vunet test guest: a Debian cloud kernel plus a small busybox initramfs with the network
# tools the tests need (iperf3, socat, traceroute, iputils ping/tracepath, mtr).
#
#   vm-images/build.sh            build into $VUNET_IMAGE_DIR (default: vm-images/out), or say
#                                 "up to date" when the stamp matches the inputs
#   vm-images/build.sh --force    rebuild even when the stamp matches
#   vm-images/build.sh --check    exit 0 when up to date, 3 when a build is needed (builds nothing)
#
# Outputs: vmlinuz, initramfs.cpio.gz (and the same archive uncompressed, initramfs.cpio, which
# boots ~0.5 s faster under TCG), manifest.txt, stamp, cache/ (the downloaded .debs).
# Environment: VUNET_IMAGE_DIR, VUNET_KERNEL_PACKAGE (pin e.g. linux-image-6.1.0-56-cloud-amd64),
# SOURCE_DATE_EPOCH (mtime of every file in the archive; default 0).
# See vm-images/README.md.
set -euo pipefail
umask 022
export LC_ALL=C

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${VUNET_IMAGE_DIR:-$HERE/out}"
EPOCH="${SOURCE_DATE_EPOCH:-0}"
FORCE=0
CHECK=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "vunet-image: unknown argument: $arg" >&2; exit 64 ;;
  esac
done

log() { echo "vunet-image: $*" >&2; }
die() { echo "vunet-image: error: $*" >&2; exit 2; }

START=$(date +%s.%N)
mkdir -p "$OUT"
# One build at a time per output dir (tests may call this concurrently).
exec 9>"$OUT/.lock"
flock -w 900 9 || die "timed out waiting for the lock on $OUT/.lock"

# ---------------------------------------------------------------------------------------------
# 1. Host packages. The tools are copied from the host's installed packages (with their ldd
#    libraries); the kernel comes from `apt-get download`. qemu-system-x86 is needed by the runner.
# ---------------------------------------------------------------------------------------------
TOOL_PKGS=(iperf3 socat traceroute iputils-ping iputils-tracepath mtr-tiny netbase)
BUILD_PKGS=(cpio gzip kmod util-linux qemu-system-x86)
missing=()
for p in "${TOOL_PKGS[@]}" "${BUILD_PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
APT_UPDATED=0
apt_update() {
  if [[ $APT_UPDATED == 0 ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
}
if ((${#missing[@]})); then
  cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "vunet-image: missing packages: ${missing[*]}; run as root: apt-get update && $cmd" >&2
    exit 2
  fi
  [[ $CHECK == 1 ]] && { log "packages missing: ${missing[*]}"; exit 3; }
  log "installing: ${missing[*]}"
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive $cmd >&2; then
    apt_update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $cmd >&2
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. Packages taken as .deb files (apt-get download, cached in $OUT/cache): the real kernel
#    package behind the metapackage linux-image-cloud-amd64, and busybox. busybox is Debian's
#    regular (dynamic) build, not busybox-static: busybox-static is built with
#    FEATURE_PREFER_APPLETS/SH_STANDALONE, so its shell (and `timeout`, `xargs`, ...) run the
#    built-in applet for `traceroute`, `ping`, ... whatever PATH says, which would hide Debian's
#    traceroute and iputils. The regular build honours PATH. `apt-cache` takes ~0.7 s here, so its
#    answer is remembered in $OUT/.apt-resolved until the apt lists change.
# ---------------------------------------------------------------------------------------------
lists_key() {
  stat -c '%n %Y %s' /var/lib/apt/lists /var/lib/apt/lists/*Packages* 2>/dev/null |
    sha256sum | cut -c1-16
}
resolve_debs() {  # prints "KPKG KVER BBVER"
  apt-cache show --no-all-versions linux-image-cloud-amd64 busybox ${VUNET_KERNEL_PACKAGE:-} \
    2>/dev/null | awk -v pin="${VUNET_KERNEL_PACKAGE:-}" '
      $1 == "Package:" { pkg = $2 }
      $1 == "Version:" { ver[pkg] = $2 }
      $1 == "Depends:" && pkg == "linux-image-cloud-amd64" {
        for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) {
          k = $i; sub(/,$/, "", k)
          if ($(i+1) == "(=") { kv = $(i+2); sub(/[),]+$/, "", kv) }
          break
        }
      }
      END {
        if (pin != "") { k = pin; kv = ver[pin] }
        if (k != "" && kv != "" && ver["busybox"] != "") print k, kv, ver["busybox"]
      }'
}
LISTS_KEY=$(lists_key)
KPKG= KVER= BBVER=
if [[ -f "$OUT/.apt-resolved" ]]; then
  read -r key pin KPKG KVER BBVER <"$OUT/.apt-resolved" || true
  [[ "$key" == "$LISTS_KEY" && "$pin" == "pin=${VUNET_KERNEL_PACKAGE:-}" ]] || KPKG= KVER= BBVER=
fi
if [[ -z "$BBVER" ]]; then
  read -r KPKG KVER BBVER < <(resolve_debs) || true
  if [[ -z "$BBVER" && $(id -u) == 0 ]]; then
    apt_update
    read -r KPKG KVER BBVER < <(resolve_debs) || true
  fi
  [[ -n "$BBVER" ]] || die "apt-cache cannot resolve linux-image-cloud-amd64${VUNET_KERNEL_PACKAGE:+ ($VUNET_KERNEL_PACKAGE)} and busybox; run (as root): apt-get update"
  echo "$(lists_key) pin=${VUNET_KERNEL_PACKAGE:-} $KPKG $KVER $BBVER" >"$OUT/.apt-resolved"
fi

# ---------------------------------------------------------------------------------------------
# 3. Host files that go into the initramfs: binaries, their libraries and the dynamic loader.
# ---------------------------------------------------------------------------------------------
# name in the guest  <-  host path
declare -A TOOLS=(
  [usr/bin/iperf3]=/usr/bin/iperf3
  [usr/bin/socat]=/usr/bin/socat
  [usr/bin/traceroute.db]=/usr/bin/traceroute.db   # Debian's traceroute (-T, -I, -U, -6)
  [usr/bin/ping-iputils]=/usr/bin/ping             # iputils ping; `ping` stays busybox
  [usr/bin/tracepath]=/usr/bin/tracepath           # iputils tracepath
  [usr/bin/mtr]=/usr/bin/mtr                       # mtr (report mode: -r), and the helper it runs
  [usr/bin/mtr-packet]=/usr/bin/mtr-packet
)
mapfile -t TOOL_NAMES < <(printf '%s\n' "${!TOOLS[@]}" | sort)
declare -A LIBS=()   # guest path -> host path
for name in "${TOOL_NAMES[@]}"; do
  src=${TOOLS[$name]}
  [[ -x "$src" ]] || die "$src missing"
  while read -r line; do
    case "$line" in
      *"=> not found"*) die "ldd $src: $line" ;;
      *"=> /"*)
        lib=$(sed -E 's/.*=> (\/[^ ]+).*/\1/' <<<"$line")
        LIBS["lib/x86_64-linux-gnu/$(basename "$lib")"]=$lib ;;
      /*)  # the dynamic loader (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2
        lib=${line%% *}
        LIBS["${lib#/}"]=$lib ;;
    esac
  done < <(ldd "$src")
done
mapfile -t LIB_NAMES < <(printf '%s\n' "${!LIBS[@]}" | sort)
ETC_FILES=(/etc/services /etc/protocols)

# ---------------------------------------------------------------------------------------------
# 4. Cache stamp: build inputs (this script, init, udhcpc script, kernel package and version,
#    tool package versions, and the content of every host file that is copied).
# ---------------------------------------------------------------------------------------------
input_hash() {
  {
    echo "format 1 epoch $EPOCH"
    sha256sum "$HERE/build.sh" "$HERE/init" "$HERE/udhcpc.script" | awk '{ print $1 }'
    echo "kernel $KPKG $KVER"
    dpkg-query -W -f='${Package} ${Version}\n' "${TOOL_PKGS[@]}"
    for name in "${TOOL_NAMES[@]}"; do echo "$name $(sha256sum <"${TOOLS[$name]}")"; done
    for name in "${LIB_NAMES[@]}"; do echo "$name $(sha256sum <"${LIBS[$name]}")"; done
    echo "busybox $BBVER"
    for f in "${ETC_FILES[@]}"; do echo "$f $(sha256sum <"$f")"; done
  } | sha256sum | awk '{ print $1 }'
}
STAMP=$(input_hash)
if [[ $FORCE == 0 && -f "$OUT/stamp" && "$(cat "$OUT/stamp")" == "$STAMP" &&
      -f "$OUT/vmlinuz" && -f "$OUT/initramfs.cpio.gz" && -f "$OUT/initramfs.cpio" ]]; then
  log "up to date ($KPKG $KVER) in $OUT"
  exit 0
fi
[[ $CHECK == 1 ]] && { log "build needed"; exit 3; }

log "building guest image: $KPKG $KVER -> $OUT"
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
# 5. Kernel: download (cached in $OUT/cache), extract, pick vmlinuz and the modules.
# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT/cache"
fetch_deb() {  # PACKAGE VERSION -> prints the path of the cached .deb
  local pkg=$1 ver=$2 deb dl
  deb=$(ls "$OUT/cache/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
  if [[ -z "$deb" ]]; then
    log "apt-get download $pkg=$ver"
    mkdir -p "$WORK/dl"
    (cd "$WORK/dl" && apt-get download "$pkg=$ver" 2>&1 | grep -v 'unsandboxed as root' >&2
     exit "${PIPESTATUS[0]}") || die "apt-get download $pkg=$ver failed"
    dl=$(ls "$WORK/dl/${pkg}_"*.deb)
    rm -f "$OUT/cache/${pkg}_"*.deb
    mv "$dl" "$OUT/cache/"
    deb="$OUT/cache/$(basename "$dl")"
  fi
  echo "$deb"
}
DEB=$(fetch_deb "$KPKG" "$KVER")
BBDEB=$(fetch_deb busybox "$BBVER")
mkdir "$WORK/bb"
dpkg-deb -x "$BBDEB" "$WORK/bb"
BUSYBOX="$WORK/bb/bin/busybox"
[[ -x "$BUSYBOX" ]] || die "no bin/busybox in $BBDEB"
while read -r line; do   # its libraries (libc, libresolv) join the others
  case "$line" in
    *"=> /"*) lib=$(sed -E 's/.*=> (\/[^ ]+).*/\1/' <<<"$line")
              LIBS["lib/x86_64-linux-gnu/$(basename "$lib")"]=$lib ;;
    /*) lib=${line%% *}; LIBS["${lib#/}"]=$lib ;;
  esac
done < <(ldd "$BUSYBOX")
mapfile -t LIB_NAMES < <(printf '%s\n' "${!LIBS[@]}" | sort)
mkdir "$WORK/deb"
dpkg-deb -x "$DEB" "$WORK/deb"
KREL=$(basename "$(ls -d "$WORK"/deb/lib/modules/*/ | head -n1)")
MODDIR="$WORK/deb/lib/modules/$KREL"
[[ -f "$WORK/deb/boot/vmlinuz-$KREL" ]] || die "no vmlinuz-$KREL in $DEB"

ROOT="$WORK/root"
mkdir -p "$ROOT"
for d in bin sbin usr/bin usr/sbin usr/share lib/x86_64-linux-gnu lib64 "lib/modules/$KREL" \
         etc/vunet etc/udhcpc proc sys dev run mnt var/run; do
  mkdir -p "$ROOT/$d"
done
mkdir -m 1777 "$ROOT/tmp"
mkdir -m 0700 "$ROOT/root"

# Modules, in load order (each one's dependencies come first; checked below with modinfo).
# ipv6, af_packet and unix are built into the cloud kernel (modules.builtin); a module listed
# here that is built in is skipped, so the list also works for kernels that build them in.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         failover net_failover virtio_net ipv6 af_packet)
: >"$ROOT/etc/vunet/modules"
loaded=" "
for m in "${MODULES[@]}"; do
  if grep -Eq "/${m//_/[_-]}\.ko\$" "$MODDIR/modules.builtin"; then
    log "module $m: built in"
    loaded+="$m "
    continue
  fi
  src=$(find "$MODDIR/kernel" -regextype posix-extended \
          -regex ".*/${m//_/[_-]}\.ko(\.xz|\.zst|\.gz)?" | head -n1)
  [[ -n "$src" ]] || die "module $m neither built in nor in $KPKG"
  dst="$ROOT/lib/modules/$KREL/$m.ko"
  case "$src" in
    *.ko.xz)  command -v xz >/dev/null || die "$src needs xz: apt-get install xz-utils" ;;
    *.ko.zst) command -v zstd >/dev/null || die "$src needs zstd: apt-get install zstd" ;;
  esac
  case "$src" in
    *.ko.xz)  xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -qdc "$src" >"$dst" ;;
    *.ko.gz)  gzip -dc "$src" >"$dst" ;;
    *.ko)     cat "$src" >"$dst" ;;
  esac
  chmod 0644 "$dst"
  for dep in $(modinfo -F depends "$dst" | tr ',' ' '); do
    [[ "$loaded" == *" $dep "* ]] || die "module $m needs $dep, which is not loaded before it"
  done
  loaded+="$m "
  echo "$m" >>"$ROOT/etc/vunet/modules"
  log "module $m: $(basename "$src")"
done
cp "$MODDIR/modules.builtin" "$ROOT/lib/modules/$KREL/"
chmod 0644 "$ROOT/lib/modules/$KREL/modules.builtin"

# ---------------------------------------------------------------------------------------------
# 6. Userland.
# ---------------------------------------------------------------------------------------------
install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
# Applets that a real tool replaces below (busybox's stay reachable as `busybox traceroute`).
SKIP_APPLETS=" traceroute traceroute6 busybox "
while read -r applet; do
  [[ -n "$applet" ]] || continue
  [[ "$SKIP_APPLETS" == *" $(basename "$applet") "* ]] && continue
  [[ -e "$ROOT/$applet" || -L "$ROOT/$applet" ]] && continue
  mkdir -p "$ROOT/$(dirname "$applet")"
  ln -s /bin/busybox "$ROOT/$applet"
done < <("$BUSYBOX" --list-full | sort)

for name in "${TOOL_NAMES[@]}"; do install -m 0755 "${TOOLS[$name]}" "$ROOT/$name"; done
ln -s traceroute.db "$ROOT/usr/bin/traceroute"
ln -s traceroute.db "$ROOT/usr/bin/traceroute6"   # traceroute.db runs as -6 under this name
for name in "${LIB_NAMES[@]}"; do
  case "$name" in lib64/*) mode=0755 ;; *) mode=0644 ;; esac
  install -m $mode "${LIBS[$name]}" "$ROOT/$name"   # follows symlinks: the real file, soname name
done

# /etc
install -m 0644 "${ETC_FILES[@]}" "$ROOT/etc/"
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$ROOT/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
EOF
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
echo vunet-guest >"$ROOT/etc/hostname"
: >"$ROOT/etc/resolv.conf"
chmod 0644 "$ROOT"/etc/{passwd,group,nsswitch.conf,hosts,hostname,resolv.conf}
install -m 0755 "$HERE/init" "$ROOT/init"
install -m 0755 "$HERE/udhcpc.script" "$ROOT/etc/udhcpc/default.script"

{
  echo "kernel: $KPKG $KVER ($KREL)"
  echo "modules: $(tr '\n' ' ' <"$ROOT/etc/vunet/modules")"
  dpkg-query -W -f='${Package} ${Version}\n' "${TOOL_PKGS[@]}"
  echo "ping: busybox (ping, ping6); iputils: ping-iputils; traceroute: Debian traceroute.db"
} >"$ROOT/etc/vunet/image"
chmod 0644 "$ROOT/etc/vunet/modules" "$ROOT/etc/vunet/image"

# ---------------------------------------------------------------------------------------------
# 7. Archive: sorted names, fixed mtimes and owners, no gzip name/time => reproducible.
# ---------------------------------------------------------------------------------------------
find "$ROOT" -exec touch -h -d "@$EPOCH" {} +
(cd "$ROOT" && find . -mindepth 1 -printf '%P\n' | sort |
  cpio -o -H newc -R 0:0 --reproducible --quiet) >"$WORK/initramfs.cpio"
gzip -n -6 <"$WORK/initramfs.cpio" >"$WORK/initramfs.cpio.gz"
chmod 0644 "$WORK/initramfs.cpio" "$WORK/initramfs.cpio.gz"
install -m 0644 "$WORK/deb/boot/vmlinuz-$KREL" "$WORK/vmlinuz"

mv -f "$WORK/vmlinuz" "$OUT/vmlinuz"
mv -f "$WORK/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
# The same archive uncompressed: the runner boots with it, since gunzip under TCG costs ~0.5 s.
mv -f "$WORK/initramfs.cpio" "$OUT/initramfs.cpio"
{
  cat "$ROOT/etc/vunet/image"
  echo "libraries: ${LIB_NAMES[*]}"
  echo "vmlinuz sha256 $(sha256sum <"$OUT/vmlinuz" | cut -d' ' -f1)"
  echo "initramfs.cpio.gz sha256 $(sha256sum <"$OUT/initramfs.cpio.gz" | cut -d' ' -f1)"
  echo "initramfs.cpio.gz bytes $(stat -c %s "$OUT/initramfs.cpio.gz")"
  echo "initramfs.cpio sha256 $(sha256sum <"$OUT/initramfs.cpio" | cut -d' ' -f1)"
  echo "initramfs.cpio bytes $(stat -c %s "$OUT/initramfs.cpio")"
} >"$OUT/manifest.txt"
echo "$STAMP" >"$OUT/stamp"
log "built in $(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s: $OUT/vmlinuz $OUT/initramfs.cpio[.gz]"
