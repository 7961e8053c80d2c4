#!/usr/bin/env bash
# Start or stop the Azurite storage emulator for `make start`, with its data under the given folder.
# Default ports (10000-10002), so `UseDevelopmentStorage=true` reaches it.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:-.azurite}
pidfile="$dir/azurite.pid"
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "Azurite already running (pid $(cat "$pidfile"))"; exit 0
    fi
    node_modules/.bin/azurite --silent --skipApiVersionCheck --disableTelemetry --location "$dir" --debug "$dir/debug.log" \
      --blobPort 10000 --queuePort 10001 --tablePort 10002 >"$dir/azurite.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if (echo >/dev/tcp/127.0.0.1/10002) 2>/dev/null; then echo "Azurite started (pid $(cat "$pidfile"))"; exit 0; fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "Azurite failed to start, see $dir/azurite.log"; exit 1; }
      sleep 0.1
    done
    echo "Azurite did not open port 10002 within 10 s, see $dir/azurite.log"; exit 1 ;;
  stop)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; echo "Azurite stopped"; fi ;;
  *) echo "usage: $0 start|stop [dir]"; exit 2 ;;
esac
