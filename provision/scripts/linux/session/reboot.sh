# Step: reboot the guest after a short delay, detached from this session. Prints {boot_id}.
set -eu
boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
delay="${1:-2}"
( sleep "$delay"; reboot -f 2>/dev/null || reboot ) </dev/null >/dev/null 2>&1 &
printf '{"boot_id":"%s"}\n' "$boot_id"
