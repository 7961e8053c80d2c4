#!/usr/bin/env bash
# Start or stop the Azurite storage emulator for `make prepare` / `make start`, with its data under the given folder.
#
#   bash scripts/azurite.sh start [dir]    start it (default dir .azurite); "started" only once every port answers
#   bash scripts/azurite.sh stop [dir]     stop the Azurite this script started
#   bash scripts/azurite.sh status [dir]
#   bash scripts/azurite.sh where [dir]    one line for `make prepare`: the ports it listens on, where its data is
#   bash scripts/azurite.sh connection [dir]   the AzureWebJobsStorage that reaches it
#
# Default ports 10000-10002 (blob, queue, table), so `UseDevelopmentStorage=true` reaches it; AZURITE_PORTS
# ("BLOB QUEUE TABLE") changes them, and then AzureWebJobsStorage must name them (`connection` prints the
# string). The ports of a running Azurite are kept in $dir/azurite.ports. Its log is $dir/azurite.log: no
# --debug log, and a log over 1 MiB is moved to azurite.log.1 at the next start, so it stays bounded.
set -euo pipefail
cmd=${1:-}
dir=${2:-.azurite}
pidfile="$dir/azurite.pid"
portsfile="$dir/azurite.ports"
log="$dir/azurite.log"
default_ports="10000 10001 10002"
read -r blob_port queue_port table_port <<<"${AZURITE_PORTS:-$default_ports}"
ports=("$blob_port" "$queue_port" "$table_port")
azurite=node_modules/.bin/azurite
# Azurite's well-known development account (public, the same in every Azurite): not a secret
account=devstoreaccount1
account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# The ports of the Azurite running from $dir (as it was started), else those asked for now.
running_ports() {
  if [ -n "$(running_pid 2>/dev/null)" ] && [ -s "$portsfile" ]; then cat "$portsfile"; else echo "${ports[*]}"; fi
}

# The AzureWebJobsStorage that reaches Azurite on the ports "BLOB QUEUE TABLE".
connection_string() {
  local b q t
  read -r b q t <<<"$1"
  if [ "$b $q $t" = "$default_ports" ]; then echo "UseDevelopmentStorage=true"; return; fi
  echo "DefaultEndpointsProtocol=http;AccountName=$account;AccountKey=$account_key;BlobEndpoint=http://127.0.0.1:$b/$account;QueueEndpoint=http://127.0.0.1:$q/$account;TableEndpoint=http://127.0.0.1:$t/$account;"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who listens on a port, when the system can tell cheaply ("node (pid 123)"); empty otherwise.
holder() {
  local port=$1 line=""
  if command -v ss >/dev/null 2>&1; then
    line=$(ss -H -ltnp "sport = :$port" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 || true)
    [ -n "$line" ] && { sed -E 's/users:\(\("([^"]*)",pid=([0-9]+)/\1 (pid \2)/' <<<"$line"; return; }
  fi
  if command -v lsof >/dev/null 2>&1; then
    lsof -nP -iTCP:"$port" -sTCP:LISTEN -Fpc 2>/dev/null | awk '/^p/{p=substr($0,2)} /^c/{print substr($0,2) " (pid " p ")"; exit}'
  fi
}

# The pid in the pid file, if that process is alive and is an Azurite; else nothing (and a stale file is removed).
running_pid() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= 2>/dev/null | grep -q azurite; then
    echo "$pid"
  else
    rm -f "$pidfile"
    echo "Removed a stale pid file ($pidfile: process ${pid:-?} is not running)" >&2
  fi
}

# Azurite answers HTTP on the port with its own Server header (not just any process holding it).
answers() {
  local reply
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 && head -c 4096 <&3" 2>/dev/null || true)
  grep -qi '^server: azurite' <<<"$reply"
}

start() {
  if [ ! -x "$azurite" ]; then
    echo "Azurite is not installed ($azurite is missing): run \`make prepare\` (or \`npm ci\`) in the app folder first." >&2
    exit 1
  fi
  mkdir -p "$dir"
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ]; then
    echo "Azurite already running (pid $pid, ports $(running_ports), data in $dir)"; exit 0
  fi
  local port who taken=0
  for port in "${ports[@]}"; do
    if listening "$port"; then
      who=$(holder "$port")
      echo "Port $port is already in use${who:+ by $who}: Azurite needs ports ${ports[*]}." >&2
      taken=1
    fi
  done
  if [ "$taken" = 1 ]; then
    local reach="AzureWebJobsStorage must name these ports: \`AZURITE_PORTS=\"${ports[*]}\" bash $0 connection\` prints it"
    [ "${ports[*]}" = "$default_ports" ] && reach="UseDevelopmentStorage=true reaches it"
    echo "Stop that process, or start Azurite on other free ports (blob, queue, table), e.g. AZURITE_PORTS=\"20000 20001 20002\" make prepare; AzureWebJobsStorage must then name those ports (make prepare prints the string)." >&2
    echo "If it is an Azurite of your own on these ports, use it as it is ($reach)." >&2
    exit 1
  fi
  if [ -f "$log" ] && [ "$(wc -c <"$log")" -gt 1048576 ]; then mv -f "$log" "$log.1"; fi
  local launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)  # its own session: Ctrl-C in this terminal leaves it running
  "${launcher[@]}" "$azurite" --silent --skipApiVersionCheck --disableTelemetry --location "$dir" \
    --blobPort "$blob_port" --queuePort "$queue_port" --tablePort "$table_port" >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  echo "${ports[*]}" >"$portsfile"
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      echo "Azurite exited at start; the end of $log:" >&2
      tail -n 5 "$log" >&2
      exit 1
    fi
    if answers "$blob_port" && answers "$queue_port" && answers "$table_port"; then
      echo "Azurite started (pid $pid) on 127.0.0.1 ports ${ports[*]}, data in $dir, log $log"; exit 0
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "Azurite did not answer on ports ${ports[*]} within 30 s and was stopped; see $log" >&2
  exit 1
}

stop() {
  local pid
  pid=$(running_pid)
  if [ -z "$pid" ]; then
    echo "Azurite is not running (nothing started by this script in $dir)"; exit 0
  fi
  kill "$pid"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile" "$portsfile"; echo "Azurite stopped (pid $pid)"; exit 0; fi
    sleep 0.1
  done
  echo "Azurite (pid $pid) did not stop within 10 s; \`kill -9 $pid\` ends it" >&2
  exit 1
}

status() {
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ]; then echo "Azurite running (pid $pid, ports $(running_ports), data in $dir)"; else echo "Azurite is not running"; exit 3; fi
}

# One line for `make prepare`; and, when the ports are not the default ones, what AzureWebJobsStorage must be.
where() {
  local running
  running=$(running_ports)
  echo "running on 127.0.0.1 ports $running (blob, queue, table), data and log in $dir/ ('make stop' stops it)"
  if [ "$running" != "$default_ports" ]; then
    echo "  note: these are not the default ports, so UseDevelopmentStorage=true does not reach this Azurite: set"
    echo "  AzureWebJobsStorage in local.settings.json to"
    echo "    $(connection_string "$running")"
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  where) where ;;
  connection) connection_string "$(running_ports)" ;;
  *) echo "usage: $0 start|stop|status|where|connection [dir]" >&2; exit 2 ;;
esac
