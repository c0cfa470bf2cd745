# Step: sizes of every file under a directory, to verify a tree transfer. $1 = directory.
# Prints one "size<TAB>./relative/path" line per file, then {"done":true}.
# GNU find prints sizes itself; busybox find has no -printf, so stat does (its sizes come from
# the inode; `wc -c` reads every byte: 12 s for 248 MB in a TCG guest), else wc -c.
set -eu
cd -- "$1"
if find . -maxdepth 0 -printf '' >/dev/null 2>&1; then
    find . -type f -printf '%s\t./%P\n'
elif stat -c %s . >/dev/null 2>&1; then
    find . -type f -exec stat -c "$(printf '%%s\t%%n')" {} +
else
    find . -type f -exec wc -c {} + | while read -r size name; do
        [ "$name" = total ] && continue
        printf '%s\t%s\n' "$size" "$name"
    done
fi
printf '{"done":true}\n'
