#!/usr/bin/env bash
# Start a worker, feed it the demo stream, print the milestone events, keep the worker running.
set -euo pipefail
milestream=${1:-milestream}
mkdir -p .local
log=.local/worker.log
"$milestream" worker >"$log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null; wait $worker 2>/dev/null' EXIT INT TERM
echo "worker started (pid $worker, log $log, metrics http://${MILESTREAM_WEB_HOST:-127.0.0.1}:${MILESTREAM_WEB_PORT:-6066}/metrics)"
if ! "$milestream" demo; then
  echo "demo failed; last worker log lines:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
if [ "${MILESTREAM_DEMO_ONLY:-0}" = "1" ]; then
  exit 0
fi
echo "the worker keeps running; produce more events (see README), watch them with \`$milestream tail\` in another terminal, or press Ctrl-C to stop it"
wait $worker
