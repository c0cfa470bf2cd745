# install/run_setup.sh: run a build's entry point, `sh setup.sh [--uninstall]`, from the build root, with its
# output in a log file the caller downloads (so a failure can show the relevant lines).
# $1 = build dir, $2 = log file, $3 = "install" | "uninstall".
# Prints {"exit_code": N, "log": "<path>"}; the exit code is the caller's to judge.
set -u
dir="$1"
log="$2"
action="$3"
cd "$dir" || { printf '{"exit_code":127,"log":null}\n'; exit 0; }
if [ ! -f setup.sh ]; then
    printf '{"exit_code":127,"log":null}\n'
    exit 0
fi
if [ "$action" = "uninstall" ]; then
    sh setup.sh --uninstall >"$log" 2>&1 </dev/null
else
    sh setup.sh >"$log" 2>&1 </dev/null
fi
code=$?
printf '{"exit_code":%d,"log":"%s"}\n' "$code" "$log"
