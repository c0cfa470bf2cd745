# Step: sizes of every file under a directory, to verify a tree transfer. $1 = directory.
# Prints one "size<TAB>./relative/path" line per file, then {"done":true}.
set -eu
cd -- "$1"
find . -type f -exec wc -c {} + | while read -r size name; do
    [ "$name" = total ] && continue
    printf '%s\t%s\n' "$size" "$name"
done
printf '{"done":true}\n'
