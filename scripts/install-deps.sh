#!/usr/bin/env bash
#
# Installs what building and testing need on a Debian/Ubuntu machine: the
# Rust toolchain (rustup) and the outside tools the tests use as oracles
# (qemu-img/qemu-io, nbdinfo/nbdcopy, makedumpfile, gdb, binutils).
# Sourced by run-demo.sh and test-all.sh; puts cargo on PATH.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

need_pkgs=()
command -v qemu-img >/dev/null 2>&1 || need_pkgs+=(qemu-utils)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v socat >/dev/null 2>&1 || need_pkgs+=(socat)
command -v nbdinfo >/dev/null 2>&1 || need_pkgs+=(libnbd-bin)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
command -v as >/dev/null 2>&1 || need_pkgs+=(binutils)
command -v makedumpfile >/dev/null 2>&1 || need_pkgs+=(makedumpfile)
command -v gdb >/dev/null 2>&1 || need_pkgs+=(gdb)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl ca-certificates)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "== installing ${need_pkgs[*]}"
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || {
        echo "install-deps: could not install ${need_pkgs[*]}" >&2
        exit 1
    }
fi
if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
        echo "== installing the Rust toolchain with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null || exit 1
    }
    export PATH="$HOME/.cargo/bin:$PATH"
fi

true
