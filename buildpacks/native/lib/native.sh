# Shared by renga's native buildpacks (native, native-python,
# native-nodejs): sourced by their bin/ scripts.

# native_procfile BUILD_DIR: succeeds when the app's Procfile has a process
# whose command is not a .wasm component, so the native backend runs it.
native_procfile() {
  local procfile="$1/Procfile" line command first
  [ -f "$procfile" ] || return 1
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | \#*) continue ;; esac
    [[ "$line" =~ ^[[:space:]]*[A-Za-z0-9_-]+[[:space:]]*: ]] || continue
    command=${line#*:}
    read -r first _ <<<"$command" || true
    [ -n "$first" ] && [[ "$first" != *.wasm ]] && return 0
  done <"$procfile"
  return 1
}

indent() { sed -u 's/^/       /'; }
fail() {
  echo " !     $*"
  exit 1
}

# profile_d BUILD_DIR NAME LINES: writes .profile.d/NAME.sh, which every
# native process of the app sources before its command (as on Heroku).
profile_d() {
  mkdir -p "$1/.profile.d"
  printf '%s\n' "$3" >"$1/.profile.d/$2.sh"
}
