# install/record.sh: record what harness installed. $1 = record file, $2 = record JSON (made by harness).
# Prints {"written": true}.
set -eu
marker="$1"
mkdir -p -- "$(dirname -- "$marker")"
printf '%s\n' "$2" >"$marker.tmp"
mv -f -- "$marker.tmp" "$marker"
printf '{"written":true}\n'
