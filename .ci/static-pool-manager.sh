#!/usr/bin/env bash
# Builds pool-manager as a static executable and checks that it is one.
#
# pool-manager runs in the pool pod's cstor-pool-mgmt container, which must be built on the
# upstream uZFS image (openebs/cstor-base, Ubuntu 18.04: glibc 2.27) for its zpool/zfs CLIs.
# A binary linked dynamically on Debian 12 needs glibc 2.34+ symbols and does not start
# there, so pool-manager links glibc statically (`crt-static`; no musl target is needed).
# `--target` keeps these objects apart from the ordinary build's in the same target directory
# and keeps RUSTFLAGS away from build scripts and proc macros (which must stay dynamic).
#
# The result is a static-pie executable (`file`: "static-pie linked"): no PT_INTERP, so the
# kernel starts it without any ld.so, and no NEEDED library or GLIBC symbol version. It keeps a
# PT_DYNAMIC segment, which holds only its own relocations (applied by the startup code linked
# in from libc.a, for ASLR); nothing of the image's glibc is used.
#
# Linker warnings (GNU ld prints them; current rustc does not show linker output by default):
#   "Using 'getaddrinfo' in statically linked applications requires at runtime the shared
#   libraries from the glibc version used for linking" (getpwuid_r etc. say the same): name
#   lookups go through NSS. Since glibc 2.34 the `files` and `dns` sources are part of libc,
#   so a static binary carries them and they work in any image; only other sources named in
#   the image's /etc/nsswitch.conf (mdns, systemd, ldap...) would be dlopen()ed, and a 2.27
#   image's modules do not fit a 2.36 libc. pool-manager resolves only the Kubernetes API
#   host (KUBERNETES_SERVICE_HOST or a cluster DNS name), for which a pod uses `files` + `dns`.
# kube's TLS is rustls with ring (Rust plus ring's own C and assembly, linked in): it loads
# nothing at run time, so it needs no change for a static link; its CA is the service
# account's, not the image's.
set -euo pipefail
cd "$(dirname "$0")/.."

target="$(rustc -vV | sed -n 's/^host: //p')"
bin="target/$target/release/pool-manager"

RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" -p cstor-operators --bin pool-manager

fail() {
  echo "static-pool-manager: $bin: $*" >&2
  exit 1
}

# No program interpreter (ld.so): the kernel starts it without the image's dynamic loader.
if readelf -lW "$bin" | grep -q 'INTERP'; then
  fail "has a PT_INTERP program header (dynamically linked)"
fi
# No shared library needed, hence no glibc of the image used.
if readelf -dW "$bin" | grep -q '(NEEDED)'; then
  fail "needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ')"
fi
# The highest GLIBC symbol version it needs: none for a static executable.
glibc="$(readelf -VW "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1 || true)"
if [ -n "$glibc" ]; then
  fail "needs glibc symbol versions up to $glibc"
fi
"$bin" --help >/dev/null || fail "does not run (--help)"
echo "static-pool-manager: $bin: $(file -b "$bin" 2>/dev/null | cut -d, -f1-5 || true)"
echo "static-pool-manager: static: no PT_INTERP, no NEEDED library, highest GLIBC version needed: none"
