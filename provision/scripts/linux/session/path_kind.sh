# Step: is a guest path a directory, a file, or missing? $1 = path. Prints {kind}.
if [ -d "$1" ]; then kind=dir; elif [ -e "$1" ]; then kind=file; else kind=missing; fi
printf '{"kind":"%s"}\n' "$kind"
