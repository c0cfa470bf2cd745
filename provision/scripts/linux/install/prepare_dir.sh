# install/prepare_dir.sh: give a build an empty directory to be unpacked into. $1 = directory.
# Prints {"removed": true|false}.
set -eu
dir="$1"
removed=false
if [ -e "$dir" ]; then
    rm -rf -- "$dir"
    removed=true
fi
mkdir -p -- "$dir"
printf '{"removed":%s}\n' "$removed"
