#!/usr/bin/env bash
# OpenSSH through port sessions of the local emulator, with the release
# binary in the place of session-manager-plugin:
#  1. as the ProxyCommand (what AWS-StartSSHSession gives an SSH client):
#     logs in, runs a command, copies a file up and down with scp RUNS times;
#  2. as a local port forwarder (what AWS-StartPortForwardingSession gives):
#     the same copies to the forwarded local port, then three copies up at
#     once through one session (three smux streams);
#  3. as a basic-mode forwarder (an agent up to 3.0.196.0, one connection at
#     a time): the copy up, then the copy down through the same session;
# checks each copy and prints the times, then the same copies straight to the
# sshd for scale.
#
#   cargo build --release && benches/scp-through-port-session.sh [SIZE_MB] [RUNS]
#
# Needs ssh, scp, sshd (Debian: openssh-client, openssh-server), curl with
# --aws-sigv4 (7.75 or later) and python3. Loopback only; everything lives in
# a temporary directory, removed at the end.
set -euo pipefail
size_mb=${1:-20}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CLOUDSHELL_RS_BIN:-$root/target/release/cloudshell-rs}
sshd=$(command -v sshd || echo /usr/sbin/sshd)
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -x "$sshd" ] || { echo "sshd not found (Debian: apt-get install openssh-server)" >&2; exit 2; }

dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
export AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# An sshd on loopback, with its own keys, letting the user in with a key.
ssh-keygen -q -t ed25519 -N '' -f "$dir/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$dir/userkey"
ssh_port=$(free_port)
cat > "$dir/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $dir/hostkey
AuthorizedKeysFile $dir/userkey.pub
PasswordAuthentication no
PermitRootLogin yes
StrictModes no
UsePAM no
PidFile $dir/sshd.pid
EOF
mkdir -p /run/sshd 2>/dev/null || true
"$sshd" -D -f "$dir/sshd_config" -E "$dir/sshd.log" &
pids+=($!)

# An emulator whose sessions run MODE, with its own state; sets endpoint and env_id.
start_emulator() {
  "$bin" emulator --session-mode "$1" --state-dir "$dir/state-$2" > "$dir/emulator-$2.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^export AWS_SECRET' "$dir/emulator-$2.out" 2>/dev/null && break; sleep 0.05; done
  eval "$(grep '^export' "$dir/emulator-$2.out")"
  endpoint=$AWS_ENDPOINT_URL_CLOUDSHELL
  "$bin" create > /dev/null
  env_id=$("$bin" describe --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["Environments"][0]["EnvironmentId"])')
  for _ in $(seq 100); do "$bin" status "$env_id" | grep -q RUNNING && break; sleep 0.1; done
}
# First the sessions relayed to the sshd over the standard streams.
start_emulator "port:$ssh_port" port

call() { # call OPERATION JSON: a SigV4-signed CloudShell call to the emulator
  curl -sf --aws-sigv4 "aws:amz:$AWS_REGION:cloudshell" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'content-type: application/json' -X POST "$endpoint/$1" -d "$2"
}
# The ProxyCommand: a new session, opened by the binary in plugin mode.
cat > "$dir/proxy" <<EOF
#!/bin/sh
exec "$bin" session-manager-plugin "\$(cat "$dir/session.json")" $AWS_REGION StartSession "" '{"portNumber":["22"]}' "$endpoint" 2>>"$dir/plugin.log"
EOF
chmod +x "$dir/proxy"
new_session() { call createSession "{\"EnvironmentId\":\"$env_id\"}" > "$dir/session.json"; }
end_session() {
  local id
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["SessionId"])' "$dir/session.json")
  call deleteSession "{\"EnvironmentId\":\"$env_id\",\"SessionId\":\"$id\"}" > /dev/null
}
opts=(-F /dev/null -i "$dir/userkey" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
via=("${opts[@]}" -o "ProxyCommand=$dir/proxy")
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

head -c $((size_mb * 1000000)) /dev/urandom > "$dir/file"
want=$(sha256sum < "$dir/file")

new_session
echo "ssh through the session: $(ssh "${via[@]}" root@cloudshell-port 'echo ok-$((6*7)); uname -s' | tr '\n' ' ')"
end_session

check() { [ "$(sha256sum < "$1")" = "$want" ] || { echo "copy differs: $1" >&2; exit 1; }; rm -f "$1"; }
for i in $(seq "$runs"); do
  new_session; t0=$(now)
  scp -O "${via[@]}" "$dir/file" "root@cloudshell-port:$dir/up"
  t1=$(now); end_session; check "$dir/up"
  new_session; t2=$(now)
  scp -O "${via[@]}" "root@cloudshell-port:$dir/file" "$dir/down"
  t3=$(now); end_session; check "$dir/down"
  echo "run $i: ${size_mb} MB up $(secs "$t0" "$t1") s, down $(secs "$t2" "$t3") s (through the port session, identical)"
done
# Local port forwarding to the sshd: the binary listens, scp connects to it.
start_emulator "forward:$ssh_port" forward
# Each forwarder writes to a file of its own: the shell truncates a file named
# in a background command's redirection in the child, so a file shared with
# the previous forwarder could still show that one's port when first read.
forwarders=0
start_forwarder() {
  new_session
  forwarders=$((forwarders + 1))
  local out="$dir/forward-$forwarders.out"
  "$bin" session-manager-plugin "$(cat "$dir/session.json")" "$AWS_REGION" StartSession "" '{}' "$endpoint" > "$out" 2>>"$dir/plugin.log" &
  fwd_pid=$!
  pids+=("$fwd_pid")
  for _ in $(seq 200); do grep -q '^Port [0-9]* opened' "$out" 2>/dev/null && break; sleep 0.02; done
  local_port=$(sed -n 's/^Port \([0-9]*\) opened.*/\1/p' "$out")
  if [ -z "$local_port" ]; then
    echo "the forwarder announced no port within 4 s; its stdout and log:" >&2
    cat "$out" >&2; tail -20 "$dir/plugin.log" >&2
    exit 1
  fi
}
stop_forwarder() { kill -INT "$fwd_pid"; wait "$fwd_pid"; end_session; }
for i in $(seq "$runs"); do
  start_forwarder
  t0=$(now); scp -O -P "$local_port" "${opts[@]}" "$dir/file" "root@127.0.0.1:$dir/up"; t1=$(now); check "$dir/up"
  t2=$(now); scp -O -P "$local_port" "${opts[@]}" "root@127.0.0.1:$dir/file" "$dir/down"; t3=$(now); check "$dir/down"
  t4=$(now)
  copies=()
  for k in 1 2 3; do scp -O -P "$local_port" "${opts[@]}" "$dir/file" "root@127.0.0.1:$dir/up$k" & copies+=($!); done
  for c in "${copies[@]}"; do wait "$c"; done
  t5=$(now)
  for k in 1 2 3; do check "$dir/up$k"; done
  stop_forwarder
  echo "run $i: ${size_mb} MB up $(secs "$t0" "$t1") s, down $(secs "$t2" "$t3") s, 3 x ${size_mb} MB up at once $(secs "$t4" "$t5") s (through a forwarded local port, identical)"
done
# The same with an agent that does not multiplex: the second connection of a
# session reaches the sshd only if the first one's end (DisconnectToPort)
# made the agent connect again.
start_emulator "forward-basic:$ssh_port" basic
for i in $(seq "$runs"); do
  start_forwarder
  t0=$(now); scp -O -P "$local_port" "${opts[@]}" "$dir/file" "root@127.0.0.1:$dir/up"; t1=$(now); check "$dir/up"
  t2=$(now); scp -O -P "$local_port" "${opts[@]}" "root@127.0.0.1:$dir/file" "$dir/down"; t3=$(now); check "$dir/down"
  stop_forwarder
  echo "run $i: ${size_mb} MB up $(secs "$t0" "$t1") s, down $(secs "$t2" "$t3") s (through a basic-mode forwarded port, one session, identical)"
done
for i in $(seq "$runs"); do
  t0=$(now); scp -O -P "$ssh_port" "${opts[@]}" "$dir/file" "root@127.0.0.1:$dir/up"; t1=$(now); check "$dir/up"
  t2=$(now); scp -O -P "$ssh_port" "${opts[@]}" "root@127.0.0.1:$dir/file" "$dir/down"; t3=$(now); check "$dir/down"
  echo "run $i: ${size_mb} MB up $(secs "$t0" "$t1") s, down $(secs "$t2" "$t3") s (straight to sshd, for scale)"
done
