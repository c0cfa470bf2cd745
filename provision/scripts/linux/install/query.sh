# install/query.sh: what build does harness's record say is installed? $1 = record file.
# Prints {"marker": <record JSON> | null}.
set -eu
marker="$1"
if [ -s "$marker" ]; then
    printf '{"marker":%s}\n' "$(cat "$marker")"
else
    printf '{"marker":null}\n'
fi
