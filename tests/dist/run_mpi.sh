#!/usr/bin/env bash
# run_mpi.sh — runs a test command under mpirun for the ctest label `mpi`.
#
#   run_mpi.sh NP COMMAND...                           the command must succeed on every rank
#   run_mpi.sh --expect-fail REGEX SECONDS NP COMMAND...  the job must end with a non-zero status,
#                                                      output matching REGEX, within SECONDS
#
# Exits 77 (ctest SKIP_RETURN_CODE) when mpirun is absent. Open MPI gets --oversubscribe (more
# ranks than cores on CI machines) and, for root, --allow-run-as-root. One OpenMP thread per rank.
set -u
expect_fail=0
if [[ ${1:-} == --expect-fail ]]; then
  expect_fail=1
  regex=$2
  max_seconds=$3
  shift 3
fi
np=$1
shift
command -v mpirun >/dev/null 2>&1 || { echo "run_mpi.sh: mpirun not found: skipped"; exit 77; }
flags=()
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  flags+=(--oversubscribe)
  [[ $(id -u) == 0 ]] && flags+=(--allow-run-as-root)
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
if [[ $expect_fail == 0 ]]; then
  exec mpirun "${flags[@]}" -np "$np" "$@"
fi
log=$(mktemp "${TMPDIR:-/tmp}/run_mpi.XXXXXX")
trap 'rm -f "$log"' EXIT
start=$(date +%s)
timeout -s KILL $((max_seconds + 30)) mpirun "${flags[@]}" -np "$np" "$@" >"$log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))
cat "$log"
echo "run_mpi.sh: exit status $rc after ${elapsed} s"
[[ $rc != 0 ]] || { echo "run_mpi.sh: FAIL: the job succeeded, a failure was expected"; exit 1; }
((elapsed < max_seconds + 30)) || { echo "run_mpi.sh: FAIL: the job hung and was killed after $((max_seconds + 30)) s"; exit 1; }
grep -Eq "$regex" "$log" || { echo "run_mpi.sh: FAIL: no output matches '$regex'"; exit 1; }
((elapsed <= max_seconds)) || { echo "run_mpi.sh: FAIL: took ${elapsed} s (limit ${max_seconds} s)"; exit 1; }
echo "run_mpi.sh: OK: the job failed as expected within ${elapsed} s"
