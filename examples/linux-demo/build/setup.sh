#!/bin/sh
# An efW-shaped build for a Linux guest: harness installs it exactly as it installs efW on
# Windows (upload, uninstall the old one, run the installer, restart sshd, verify in a fresh
# session). Like efW's MSI, it changes what *new* SSH sessions see: here an environment variable
# set through sshd's SetEnv, standing in for efW's entry on the machine PATH.
# Usage: sh setup.sh            install
#        sh setup.sh --uninstall
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runtime=/opt/efw-demo
envfile=/etc/ssh/sshd_config.d/harness-env.conf
log=/tmp/setup-efw-demo.log

if [ "${1:-}" = "--uninstall" ]; then
  echo "uninstalling $(cat "$runtime/VERSION" 2>/dev/null || echo nothing)" >>"$log"
  rm -rf "$runtime"
  rm -f "$envfile"
  echo "uninstalled" >>"$log"
  exit 0
fi

echo "installing from $here" >>"$log"
mkdir -p "$runtime/bin"
cp "$here/VERSION" "$runtime/VERSION"
# The "runtime library" the tests load, like ebpfapi.dll.
cp "$here/ebpfapi" "$runtime/bin/ebpfapi"
mkdir -p "$(dirname "$envfile")"
echo "SetEnv EFW_RUNTIME_DIR=$runtime" >"$envfile"
echo "installed $(cat "$runtime/VERSION")" >>"$log"
