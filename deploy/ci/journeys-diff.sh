#!/usr/bin/env bash
# What a change to journeys.yaml would have done to paging: replays your Prometheus's
# alerts of the last week through journey-receiver twice, with the journeys.yaml of the
# working tree and with the one of BASE (a git commit or ref), and prints the report with
# the difference (incidents and pages gained or lost per journey, alerts that moved between
# journeys, incidents told at a new priority). Run it from the checkout's root in a pull
# request's CI job:
#
#   PROMETHEUS_URL=http://prometheus:9090 deploy/ci/journeys-diff.sh origin/main
#
# Options after BASE go to `journey-receiver replay` and win over the defaults here
# (`--since 7d`), e.g. `--am-group-by env,region`; the files compared are set here, not
# there. Optional: JOURNEYS_FILE (default config/journeys.yaml, relative to the checkout),
# RECEIVER_CONFIG (its grouping, scoring and routing are used; default
# config/receiver.yaml when there is one), BASE_NAME (how the report names BASE, e.g. the
# branch when BASE is a commit). With GITHUB_STEP_SUMMARY set (GitHub Actions) the report
# also goes there, in a code block. A journeys.yaml new in the change is replayed alone.
# Exit 0 with a report, whatever it shows: it informs the review, it does not gate it;
# non-zero with a reason on stderr when it cannot run (no such BASE, no PROMETHEUS_URL, the
# replay failed...).
#
# journey-receiver runs on a redis-server of its own when one is on PATH (Debian and Ubuntu
# package redis-server), about three times faster than without.
set -euo pipefail

fail() {
  echo "$0: $1" >&2
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    printf '### journeys.yaml: no report\n\n%s (see the job log)\n' "$1" >> "$GITHUB_STEP_SUMMARY"
  fi
  exit 1
}

[ "$#" -ge 1 ] || fail "usage: $0 BASE [journey-receiver replay options...]"
base="$1"
shift
name="${BASE_NAME:-$base}"
[ -n "${PROMETHEUS_URL:-}" ] || fail "PROMETHEUS_URL is not set"
command -v journey-receiver > /dev/null ||
  fail "journey-receiver is not on PATH (in a checkout: source .venv/bin/activate)"
for arg in "$@"; do
  case "$arg" in
    --journeys|--journeys=*|--against|--against=*)
      fail "$arg: the files compared are JOURNEYS_FILE and its version at BASE" ;;
  esac
done
journeys="${JOURNEYS_FILE:-config/journeys.yaml}"
case "$journeys" in
  /*) fail "JOURNEYS_FILE $journeys: give it relative to the checkout, as git names it" ;;
esac
[ -f "$journeys" ] || fail "$journeys: not in the working tree (run from the checkout's root)"
git rev-parse --verify --quiet "$base^{commit}" > /dev/null ||
  fail "$base: no such commit in this checkout (fetch it: actions/checkout fetch-depth)"

# The URL goes by the environment (journey-receiver reads PROMETHEUS_URL), not by the
# command line, which anyone on the runner can read in the process list.
export PROMETHEUS_URL
args=(replay --since 7d --journeys "$journeys")
if [ -n "${RECEIVER_CONFIG:-}" ]; then
  [ -f "$RECEIVER_CONFIG" ] || fail "RECEIVER_CONFIG $RECEIVER_CONFIG: no such file"
  args+=(--config "$RECEIVER_CONFIG")
elif [ -f config/receiver.yaml ]; then
  args+=(--config config/receiver.yaml)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# ./ : the path is the working tree's, from here (git reads a bare one from the top).
if git cat-file -e "$base:./$journeys" 2> /dev/null; then
  git show "$base:./$journeys" > "$work/base.yaml"
  args+=(--against "$work/base.yaml")
  title="journeys.yaml: this change against $name"
else
  title="journeys.yaml: new in this change (nothing at $name to compare with)"
fi

journey-receiver "${args[@]}" "$@" > "$work/report.txt" || fail "the replay failed"
# The report names the file it compared with; that is BASE's journeys.yaml, not a temporary
# file. (Quoted: a pattern and a replacement taken as they are.)
report=$(cat "$work/report.txt")
printf '%s\n' "${report//"$work/base.yaml"/"$name:$journeys"}" > "$work/report.txt"
cat "$work/report.txt"

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  # A fence longer than any run of backticks in the report (label values are printed as
  # they are), so nothing in it can end the block.
  fence='```'
  while grep -qF -- "$fence" "$work/report.txt"; do fence="$fence\`"; done
  {
    echo "### $title"
    echo
    echo "$fence"
    cat "$work/report.txt"
    echo "$fence"
  } >> "$GITHUB_STEP_SUMMARY"
fi
