#!/usr/bin/env sh
# Tell journey-receiver about a deploy, so that an incident right after it names the deploy
# as a probable cause (and suggests rolling it back). Run it from any CI job as the
# rollout starts:
#
#   JOURNEY_RECEIVER_URL=https://journey-receiver.example.com \
#   JOURNEY_RECEIVER_TOKEN=... \
#   deploy/ci/send-deploy-event.sh payment-service 2026.04.18-3
#
# Optional: ENVIRONMENT (default prod), REGION, CHANGE_URL (a link to the pipeline run),
# AUTHOR. Values must not contain double quotes or backslashes (they are put into JSON
# as they are). Reaching the receiver is best effort: a failure never fails the deploy.
# Every failure (missing arguments or settings included) is one line on stderr and exit 0.
#
# No `set -e`: an unexpected failure must not fail the deploy either; curl, the one command
# that can fail in practice, is checked.
set -u

# Warns and ends the script with success: a deploy must not fail over its notification.
skip() {
  echo "journey-receiver: deploy event not sent: $1" >&2
  exit 0
}

[ "$#" -eq 2 ] || skip "usage: $0 SERVICE VERSION"
service="$1"
version="$2"
# A secret or variable that is not set in CI expands to "" (GitHub Actions), so empty
# counts as unset.
[ -n "${JOURNEY_RECEIVER_URL:-}" ] || skip "JOURNEY_RECEIVER_URL is not set"
[ -n "${JOURNEY_RECEIVER_TOKEN:-}" ] || skip "JOURNEY_RECEIVER_TOKEN is not set"
region=""
[ -z "${REGION:-}" ] || region=$(printf ',"region":"%s"' "$REGION")
link=""
[ -z "${CHANGE_URL:-}" ] || link=$(printf ',"url":"%s"' "$CHANGE_URL")
body=$(printf '{"type":"deploy","service":"%s","version":"%s","environment":"%s","author":"%s"%s%s}' \
  "$service" "$version" "${ENVIRONMENT:-prod}" "${AUTHOR:-ci}" "$region" "$link")
curl --silent --show-error --fail --max-time 10 \
  -H "Authorization: Bearer ${JOURNEY_RECEIVER_TOKEN}" \
  -H "Content-Type: application/json" \
  --data "$body" \
  "${JOURNEY_RECEIVER_URL}/api/v1/events" || skip "curl exited with $?"
