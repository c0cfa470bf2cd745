# install/forget.sh: drop harness's install record before replacing a build. $1 = record file.
# Prints {"removed": true|false}.
set -eu
if [ -e "$1" ]; then
    rm -f -- "$1"
    printf '{"removed":true}\n'
else
    printf '{"removed":false}\n'
fi
