# shellcheck shell=bash
# shellcheck disable=SC2154 # here, CACHE, OUT, LOGS, WORK, VERSIONS_FILE and CA_BUNDLE come from build.sh
# Step machinery of build.sh: recipe keys, running a step with cleanups, listing and pruning.
#
# A step NAME is the function build_NAME, declared with `step NAME DEPENDENCY...` in dependency order.
# Its cache key hashes its recipe (see recipe below), so a changed step, and every step that depends on
# it, is built again, and nothing else. Its outputs are the files under $OUT/NAME-KEY and the Docker
# images it declares with `step_images NAME VARIABLE...` (variables holding image references).
#
# Expects from the caller: here (hack/airgap), CACHE, OUT, LOGS, VERSIONS_FILE, CA_BUNDLE, say, die.

STEPS=()
declare -A STEP_DEPS=() STEP_IMAGES=() KEY=() IMAGE_STEP=()

step() { # step NAME DEPENDENCY...
  local name=$1
  shift
  STEPS+=("$name")
  STEP_DEPS[$name]="$*"
}

step_images() { # step_images STEP IMAGE_VARIABLE...
  local name=$1 var
  shift
  STEP_IMAGES[$name]="$*"
  for var in "$@"; do IMAGE_STEP[$var]=$name; done
}

# function_closure FUNCTION: FUNCTION and every function its text names, transitively, one per line.
function_closure() {
  local -A seen=()
  local queue=("$1") f word functions
  functions=$(compgen -A function)
  while ((${#queue[@]})); do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -n ${seen[$f]:-} ]] && continue
    seen[$f]=1
    for word in $(declare -f "$f" | grep -oE '[A-Za-z_][A-Za-z0-9_]*' | sort -u | grep -Fx "$functions"); do
      [[ -n ${seen[$word]:-} ]] || queue+=("$word")
    done
  done
  printf '%s\n' "${!seen[@]}" | sort
}

# tree_digest PATH: one line per file under PATH (or PATH itself): path relative to $here, whether it is
# executable (the only mode git keeps, so clones with another umask agree), SHA-256.
tree_digest() {
  local f x
  while IFS= read -r f; do
    x=-
    [[ -x $f ]] && x=x
    printf '%s %s %s\n' "${f#"$here"/}" "$x" "$(sha256sum <"$f" | cut -c1-64)"
  done < <(find "$1" -type f | LC_ALL=C sort)
}

# recipe STEP: everything the step's output depends on, as text.
# - the text of build_STEP and of every function it calls, as bash prints it (comments dropped);
# - the values of the versions file's variables that this text names;
# - the content of every repository file it names as "$here/PATH" (a path ending in a variable, as
#   "$here/images/components/$name", counts the whole folder before the variable);
# - the host CA bundle, if named;
# - the keys of the steps it depends on. It must declare every step whose key (K_STEP) or image
#   (a variable of step_images) it uses: an undeclared use is an error, so a dependency cannot be missed.
recipe() {
  local step=$1 text f name path word
  text=$(while read -r f; do declare -f "$f"; done < <(function_closure "build_$step"))
  printf 'step %s\n%s\n' "$step" "$text"
  while read -r name; do
    printf 'version %s=%s\n' "$name" "${!name}"
  done < <(grep -oE '[A-Z_][A-Z0-9_]*' <<<"$text" | sort -u |
    grep -Fx "$(sed -nE 's/^([A-Z_][A-Z0-9_]*)=.*/\1/p' "$VERSIONS_FILE")" || true)
  grep -qw CA_BUNDLE <<<"$text" && printf 'ca-bundle %s\n' "$(sha256sum <"$CA_BUNDLE" | cut -c1-64)"
  while read -r path; do
    for f in "$here"/$path; do # unquoted: a path may be a glob such as kindnetd/*.go
      [[ -e $f ]] && tree_digest "$f"
    done
  done < <(grep -oE '\$\{?here\}?"?/[A-Za-z0-9_.*/-]*' <<<"$text" | sed -E 's/^[^/]*\///' | LC_ALL=C sort -u)
  while read -r word; do
    case $word in
      K_*) name=${word#K_} ;;
      *) name=${IMAGE_STEP[$word]:-} ;;
    esac
    [[ -z $name || $name == "$step" || " ${STEP_DEPS[$step]} " == *" $name "* ]] ||
      die "step $step uses $word of step $name without declaring it as a dependency"
  done < <(grep -oE '\b(K|IMG)_[A-Za-z0-9_]+' <<<"$text" | sort -u)
  for name in ${STEP_DEPS[$step]}; do printf 'depends %s %s\n' "$name" "${KEY[$name]}"; done
}

# compute_keys: KEY[STEP] and the global K_STEP for every step, in declaration order.
compute_keys() {
  local s
  for s in "${STEPS[@]}"; do
    KEY[$s]=$(recipe "$s" | sha256sum | cut -c1-12)
    printf -v "K_$s" '%s' "${KEY[$s]}"
  done
}

# step_uses_docker STEP: whether build_STEP or anything it calls runs docker (read from the code, as the
# recipe is, so a new step needs no list kept by hand).
step_uses_docker() {
  local f
  while read -r f; do
    declare -f "$f" | grep -qw docker && return 0
  done < <(function_closure "build_$1")
  return 1
}

images_exist() {
  local i
  for i in "$@"; do docker image inspect "$i" >/dev/null 2>&1 || return 1; done
}

step_image_refs() { # step_image_refs STEP: the image references the step produces
  local var
  for var in ${STEP_IMAGES[$1]:-}; do printf '%s\n' "${!var}"; done
}

# defer COMMAND ARG...: run COMMAND when the step's subshell exits, success or failure, last deferred
# first. Arguments are captured now, so a step's locals may be used (a trap string naming a local would
# be expanded only after the function returned, when the local no longer exists).
DEFERRED=()
defer() { DEFERRED+=("$(printf '%q ' "$@")"); }
run_deferred() {
  local i
  for ((i = ${#DEFERRED[@]} - 1; i >= 0; i--)); do eval "${DEFERRED[i]}" || true; done
}

# run_step STEP: runs build_STEP with D=$OUT/STEP-KEY (its outputs) and W=$WORK/STEP (scratch, removed
# afterwards) unless its stamp, D and images are there. A failed step leaves no output: D, its stamp and
# the images it declares are removed, and what it deferred runs.
run_step() {
  local s=$1 key=${KEY[$1]} t0 rc=0 i
  local stamp=$CACHE/stamps/$s-$key
  local -a images
  mapfile -t images < <(step_image_refs "$s")
  D=$OUT/$s-$key
  W=$WORK/$s
  if [[ -e $stamp && -d $D ]] && images_exist "${images[@]}"; then
    say "$s: cached ($key)"
    return 0
  fi
  t0=$(date +%s)
  rm -rf "$D" "$stamp" "$W"
  mkdir -p "$D" "$W"
  echo "=== $(date -Is) $s $key" >>"$LOGS/$s.log"
  # not in an `if`: errexit must stay active inside the step's subshell
  set +e
  (
    set -euo pipefail
    DEFERRED=()
    trap run_deferred EXIT
    defer rm -rf "$W"
    "build_$s"
  ) >>"$LOGS/$s.log" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    rm -rf "$D"
    for i in "${images[@]}"; do docker rmi -f "$i" >/dev/null 2>&1 || true; done
    tail -n 40 "$LOGS/$s.log" >&2
    die "$s failed after $(($(date +%s) - t0))s (log: $LOGS/$s.log)"
  fi
  touch "$stamp"
  say "$s: built in $(($(date +%s) - t0))s ($key)"
  echo "$s $(($(date +%s) - t0))" >>"$LOGS/timings.txt"
}

print_keys() { # every step's key, whether it is built, and what it depends on
  local s state
  for s in "${STEPS[@]}"; do
    state=missing
    [[ -e $CACHE/stamps/$s-${KEY[$s]} ]] && state=built
    printf '%-13s %s %-7s %s\n' "$s" "${KEY[$s]}" "$state" "${STEP_DEPS[$s]}"
  done
}

# prune: removes outputs, stamps and $IMG_PREFIX images of keys other than the current ones.
prune() {
  local current=" " keep=" " s p img
  for s in "${STEPS[@]}"; do
    current+="$s-${KEY[$s]} "
    for img in $(step_image_refs "$s"); do keep+="$img "; done
  done
  for p in "$OUT"/* "$CACHE"/stamps/*; do
    [[ -e $p ]] || continue
    [[ $current == *" $(basename "$p") "* ]] && continue
    say "prune: $p"
    rm -rf "$p"
  done
  while read -r img; do
    [[ $keep == *" $img "* ]] && continue
    say "prune: image $img"
    docker rmi "$img" >/dev/null || true
  done < <(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$IMG_PREFIX/" || true)
  rm -rf "$WORK"
  du -sh "$CACHE"
}
