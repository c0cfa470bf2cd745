# health/facts.sh: what ebpf-go's Linux tests need from the guest, as this SSH session sees it:
# bpffs on /sys/fs/bpf, kernel BTF, the memlock limit, free space where the tests write (/tmp;
# on an initramfs root, which df cannot measure, the memory available), /bin/bash (the uprobe
# tests exec it), and the kernel release (for the results' provenance).
# Prints {"bpffs": bool, "btf": bool, "memlock": "unlimited" | "<KiB>", "kernel": "…",
# "free_kib": N | null, "free_path": "/tmp", "bash": bool}.
set -u
bpffs=false
if awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { found = 1 } END { exit !found }' /proc/mounts 2>/dev/null; then
    bpffs=true
fi
btf=false
if [ -e /sys/kernel/btf/vmlinux ]; then
    btf=true
fi
memlock=$(ulimit -l 2>/dev/null || echo unknown)
kernel=$(uname -r | tr -d '"\\')
where=/tmp
[ -d "$where" ] || where=/
free=$(df -Pk "$where" 2>/dev/null | awk 'NR == 2 && $4 ~ /^[0-9]+$/ { print $4 }')
if [ -z "$free" ] && awk '$2 == "/" && $3 == "rootfs" { f = 1 } END { exit !f }' /proc/mounts 2>/dev/null; then
    free=$(awk '$1 == "MemAvailable:" && $2 ~ /^[0-9]+$/ { print $2 }' /proc/meminfo 2>/dev/null)
    where="$where (initramfs: memory available)"
fi
[ -n "$free" ] || free=null
bash=false
if [ -x /bin/bash ]; then
    bash=true
fi
printf '{"bpffs":%s,"btf":%s,"memlock":"%s","kernel":"%s","free_kib":%s,"free_path":"%s","bash":%s}\n' \
    "$bpffs" "$btf" "$memlock" "$kernel" "$free" "$where" "$bash"
