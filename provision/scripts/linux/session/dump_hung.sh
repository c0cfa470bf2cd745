# Step: a command ran past its timeout. Before harness kills its process group ($1), every Go
# test binary (*.test) in the group gets SIGQUIT, which makes Go print every goroutine's stack on
# stderr (and, with GOTRACEBACK=crash and a core limit, dump core). Prints
# {signalled: [{pid, exe}]}.
set -u
pgid="$1"
found=""
for d in /proc/[0-9]*; do
    p=${d#/proc/}
    stat=$(cat "$d/stat" 2>/dev/null) || continue
    # The command name (field 2) may hold spaces and parentheses: read after the last ') '.
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    [ "${3:-}" = "$pgid" ] || continue
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    # A binary removed while it runs reads as "PATH (deleted)".
    exe=${exe% (deleted)}
    case "$exe" in
        *.test)
            if kill -QUIT "$p" 2>/dev/null; then
                json_exe=$(printf '%s' "$exe" | sed 's/\\/\\\\/g; s/"/\\"/g')
                found="$found${found:+,}{\"pid\":$p,\"exe\":\"$json_exe\"}"
            fi
            ;;
    esac
done
printf '{"signalled":[%s]}\n' "$found"
