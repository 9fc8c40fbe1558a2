#!/usr/bin/env bash
# Runs shellcheck over every shell script of the repository: hack/ (files named *.sh or starting with a
# sh/bash shebang) and .ci/run. Part of make test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

command -v shellcheck >/dev/null 2>&1 ||
  die "shellcheck is missing: make test lints every script in hack/ with it (Debian: apt-get install shellcheck)"

scripts=(.ci/run)
while IFS= read -r -d '' f; do
  if [[ $f == *.sh ]] || head -n1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then scripts+=("$f"); fi
done < <(find hack -type f -print0 | sort -z)
log "shellcheck $(shellcheck --version | awk '/^version:/ {print $2}') over ${#scripts[@]} scripts"
shellcheck "${scripts[@]}"
