# Step: who is answering? Prints {boot_id, sshd_pid, path}.
set -eu
boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
pid=null
for f in /run/sshd.pid /var/run/sshd.pid; do
    if [ -r "$f" ]; then pid=$(tr -cd 0-9 < "$f"); break; fi
done
[ -n "$pid" ] || pid=null
json_path=$(printf '%s' "$PATH" | sed 's/\\/\\\\/g; s/"/\\"/g')
printf '{"boot_id":"%s","sshd_pid":%s,"path":"%s"}\n' "$boot_id" "$pid" "$json_path"
