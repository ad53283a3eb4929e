#!/usr/bin/env bash
# make demo: the whole pipeline on one machine, end to end.
#
#   deploy/demo.sh [BUILD]          (BUILD defaults to build)
#
# Starts the embedded Kafka (kafka-mock), erp-consumer with the embedded
# SQLite ERP (seeded with the simulator's opening stock) and mes-producer;
# runs the MES simulator for two sites for about 30 s with 10 % resends;
# waits until the ERP has posted every accepted movement; prints a summary;
# checks that the ERP's on-hand equals what the simulator expects. Stops
# everything it started on exit. Exits non-zero on any mismatch or failure.
#
# Knobs (environment): DEMO_SITES (PLANT1,PLANT2), DEMO_SEED (2026),
# DEMO_DURATION (30s), DEMO_RATE (movements/s, 40), DEMO_POST_TIMEOUT
# (seconds to wait for the ERP after the simulator stops, 180).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
bin=$build/bin
work=$build/demo
sites=${DEMO_SITES:-PLANT1,PLANT2}
seed=${DEMO_SEED:-2026}
duration=${DEMO_DURATION:-30s}
rate=${DEMO_RATE:-40}
post_timeout=${DEMO_POST_TIMEOUT:-180}
policy_src=$PWD/deploy/policy.yaml

say() { printf '[demo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

for b in kafka-mock mes-producer erp-consumer mes-sim; do
  [ -x "$bin/$b" ] || die "missing $bin/$b (build first: make all)"
done
[ -f "$policy_src" ] || die "missing tier policy $policy_src"
for tool in python3 sqlite3 curl; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (run: make deps)"
done

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
bin=$(cd "$bin" && pwd)

# ---- processes we start, stopped on exit (by pid, newest first) ----------
pids=()
names=()
cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping ${names[*]}"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      pid=${pids[$i]}
      kill -TERM "$pid" 2>/dev/null || continue
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  [ "$rc" -ne 0 ] && say "logs and files are in $work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started() { pids+=("$1"); names+=("$2"); }

# wait_until SECONDS WHAT CMD... : poll CMD until it succeeds; fail naming WHAT.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for $what"
    check_alive
    sleep 0.2
  done
}

check_alive() {
  local i
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null ||
      die "${names[$i]} exited unexpectedly; last lines of $work/${names[$i]}.log:
$(tail -n 20 "$work/${names[$i]}.log" 2>/dev/null)"
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

json_get() { # json_get FILE KEY
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

ledger() { sqlite3 -readonly "$work/erp-ledger.db" "$@"; }

# ERP documents made from MES movements (seed-erp's opening-stock document,
# posting_id "seed-…", is not one).
mes_docs="(SELECT doc_no FROM documents WHERE posting_id NOT LIKE 'seed-%')"
posted_count() {
  ledger "SELECT count(DISTINCT movement_id) FROM doc_movements WHERE doc_no IN $mes_docs" 2>/dev/null ||
    echo 0
}
store() { sqlite3 -readonly "$work/consumer-store.db" "$@"; }
# Movements in a given consumer state ('cancelled': a REVERSAL and its
# original netted to nothing inside a window; neither reaches the ERP).
store_count() { store "SELECT count(*) FROM movements WHERE state IN ($1)" 2>/dev/null || echo 0; }
consumer_state() {
  echo "consumer store by state: $(store "SELECT group_concat(state || '=' || n, ', ') FROM
        (SELECT state, count(*) n FROM movements GROUP BY state)" 2>/dev/null)"
  store "SELECT 'failed posting: ' || last_error FROM postings WHERE state = 'failed' LIMIT 3" 2>/dev/null
  echo "last consumer errors:"
  grep '"level":"error"' "$work/erp-consumer.log" | tail -n 3 | cut -c1-300
}

# ---- 0. the demo's policy ------------------------------------------------
# deploy/policy.yaml with its windowed cadences shortened to seconds (every
# 5s, 10s, 15s, ... in file order): the same tiers, rules and material
# master, but a 30-minute window or a 02:00 daily run would outlast the demo.
policy=$work/policy.yaml
cp "$(dirname "$policy_src")/materials.csv" "$work/" 2>/dev/null || true
say "demo policy: $policy_src with its windows shortened to seconds; tier cadences:"
python3 - "$policy_src" "$policy" <<'PY'
import re, sys
src, dst = sys.argv[1], sys.argv[2]
out, n, tier = [], 0, None
for line in open(src).read().splitlines(keepends=True):
    if line.lstrip().startswith("#"):
        out.append(line)
        continue
    m = re.match(r"^\s+([a-z0-9_-]+):\s*(\{.*)?$", line)
    if m:
        tier = m.group(1)
    c = re.match(r"^(.*?\bcadence:\s*)(.*)$", line.rstrip("\n"))
    if c:
        if "{" in c.group(1):  # flow style: the value ends at , or }
            v = re.match(r"^([^,}]*?)(\s*[,}].*)$", c.group(2))
        else:                  # block style: the value is the rest of the line
            v = re.match(r"^(.*?)(\s*(?:#.*)?)$", c.group(2))
        cad = v.group(1).strip().strip("'\"")
        if cad != "immediate":
            n += 1
            cad = "every %ds" % (5 * n)
            line = "%s%s%s\n" % (c.group(1), cad, v.group(2))
        print("    %-10s %s" % (tier, cad))
    out.append(line)
with open(dst, "w") as f:
    f.write("# generated by deploy/demo.sh from %s: windowed cadences shortened to seconds\n" % src)
    f.writelines(out)
PY
[ -s "$policy" ] || die "cannot write the demo policy"

# ---- 1. embedded Kafka ---------------------------------------------------
say "starting embedded Kafka (kafka-mock)"
"$bin/kafka-mock" --brokers 1 --exit-after 30m >"$work/kafka-mock.out" 2>"$work/kafka-mock.log" &
started $! kafka-mock
wait_until 20 "kafka-mock to print its bootstrap address" grep -qE '^[^ ]+:[0-9]+$' "$work/kafka-mock.out"
bootstrap=$(grep -m1 -E '^[^ ]+:[0-9]+$' "$work/kafka-mock.out")
say "Kafka bootstrap: $bootstrap"

# ---- 2. erp-consumer with the embedded ERP, seeded -----------------------
cport=$(free_port)
cat >"$work/consumer.yaml" <<EOF
consumer_id: demo-consumer
log: {level: info}
http: {listen: "127.0.0.1:$cport"}
store: {path: "$work/consumer-store.db", sync: normal}
policy: {path: "$policy"}
erp:
  adapter: sqlite
  sqlite: {path: "$work/erp-ledger.db"}
kafka:
  bootstrap.servers: "$bootstrap"
  topic.metadata.refresh.interval.ms: 1000
  session.timeout.ms: 6000
EOF

say "generating opening stock for $sites (seed $seed) and loading it into the ERP"
"$bin/mes-sim" opening --sites "$sites" --seed "$seed" --out "$work/opening.json" \
  >>"$work/mes-sim.log" 2>&1 || die "mes-sim opening failed (see $work/mes-sim.log)"
"$bin/erp-consumer" seed-erp --config "$work/consumer.yaml" "$work/opening.json" \
  >>"$work/erp-consumer-cli.log" 2>&1 || die "erp-consumer seed-erp failed (see $work/erp-consumer-cli.log)"
say "ERP seeded: $(ledger "SELECT count(*) FROM on_hand") on-hand rows"

say "starting erp-consumer on 127.0.0.1:$cport"
"$bin/erp-consumer" run --config "$work/consumer.yaml" >"$work/erp-consumer.log" 2>&1 &
started $! erp-consumer
wait_until 20 "erp-consumer /healthz" curl -fsS "http://127.0.0.1:$cport/healthz"

# ---- 3. mes-producer -----------------------------------------------------
pport=$(free_port)
tokens=()
token_yaml=""
IFS=, read -ra site_list <<<"$sites"
for s in "${site_list[@]}"; do
  tok="demo-$(echo "$s" | tr 'A-Z' 'a-z')-token"
  tokens+=(--token "$s=$tok")
  token_yaml+="    $s: $tok"$'\n'
done
cat >"$work/producer.yaml" <<EOF
producer_id: demo-producer
log: {level: info}
http: {listen: "127.0.0.1:$pport"}
outbox: {path: "$work/producer-outbox.db", sync: normal}
policy: {path: "$policy"}
auth:
  tokens:
${token_yaml}heartbeat: {interval: 1s}
kafka:
  bootstrap.servers: "$bootstrap"
EOF
say "starting mes-producer on 127.0.0.1:$pport"
"$bin/mes-producer" --config "$work/producer.yaml" >"$work/mes-producer.log" 2>&1 &
started $! mes-producer
wait_until 20 "mes-producer /healthz" curl -fsS "http://127.0.0.1:$pport/healthz"

# ---- 4. the simulated MES ------------------------------------------------
say "running the MES simulator: $sites, $duration at $rate movements/s, 10 % resends"
set +e
"$bin/mes-sim" run --url "http://127.0.0.1:$pport/v1/movements" --sites "$sites" --seed "$seed" \
  --duration "$duration" --rate "$rate" --batch 20 --resend 0.10 "${tokens[@]}" \
  --expected "$work/expected.json" --summary "$work/summary.json" 2>&1 | tee -a "$work/mes-sim.log" |
  sed 's/^/    /'
sim_rc=${PIPESTATUS[0]}
set -e
[ "$sim_rc" -eq 0 ] || die "mes-sim run exited $sim_rc (see $work/mes-sim.log)"
check_alive

accepted=$(json_get "$work/summary.json" accepted)
duplicates=$(json_get "$work/summary.json" duplicates)
sent=$(json_get "$work/summary.json" sent)
requests=$(json_get "$work/summary.json" requests)
say "simulator done: $sent movements sent in $requests requests; $accepted accepted, $duplicates duplicates"

# ---- 5. wait for the ERP -------------------------------------------------
say "waiting for the ERP to post all $accepted movements (windows close within seconds)"
deadline=$((SECONDS + post_timeout))
next_report=$SECONDS
last=-1
last_change=$SECONDS
while :; do
  posted=$(posted_count)
  cancelled=$(store_count "'cancelled'")
  done_n=$((posted + cancelled))
  [ "$done_n" -ge "$accepted" ] && break
  stuck=$(store_count "'failed', 'dead'")
  [ "$stuck" -eq 0 ] || die "$stuck movement(s) failed permanently in the ERP or were dead-lettered
$(consumer_state)"
  if [ "$done_n" -ne "$last" ]; then last=$done_n; last_change=$SECONDS; fi
  [ $((SECONDS - last_change)) -lt 45 ] || die "no progress for 45s at $done_n of $accepted
$(consumer_state)"
  [ "$SECONDS" -lt "$deadline" ] || die "only $done_n of $accepted movements done after ${post_timeout}s
$(consumer_state)"
  if [ "$SECONDS" -ge "$next_report" ]; then
    say "  posted $posted, cancelled $cancelled, of $accepted"
    next_report=$((SECONDS + 5))
  fi
  check_alive
  sleep 0.2
done
say "all $accepted movements done: $posted posted, $cancelled cancelled with their reversal"

# ---- 6. summary ----------------------------------------------------------
echo
echo "================ invsync demo summary ================"
printf '  movements accepted          %s\n' "$accepted"
printf '  duplicates absorbed         %s  (MES resends answered "duplicate", not posted again)\n' "$duplicates"
printf '  cancelled before posting    %s  (REVERSAL + original inside one window)\n' "$cancelled"
printf '  ERP documents               %s  (plus the opening-stock document)\n' \
  "$(ledger "SELECT count(*) FROM documents WHERE doc_no IN $mes_docs")"
echo "  ERP postings per tier:"
ledger -separator ' ' "SELECT d.tier, count(DISTINCT d.doc_no), count(m.movement_id)
                        FROM documents d JOIN doc_movements m ON m.doc_no = d.doc_no
                        WHERE d.doc_no IN $mes_docs GROUP BY d.tier ORDER BY d.tier" |
  while read -r tier docs mv; do
    printf '    %-10s %6s documents  %6s movements\n' "$tier" "$docs" "$mv"
  done
doubled=$(ledger "SELECT count(*) FROM (SELECT movement_id FROM doc_movements
                   GROUP BY movement_id HAVING count(DISTINCT doc_no) > 1)")
printf '  movements in two documents  %s\n' "$doubled"

"$bin/erp-consumer" on-hand --config "$work/consumer.yaml" >"$work/actual.json" \
  2>>"$work/erp-consumer-cli.log" || die "erp-consumer on-hand failed (see $work/erp-consumer-cli.log)"
echo "  final ERP on-hand, a few lots:"
python3 - "$work/actual.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
seen = set()
for r in rows:
    if len(seen) >= 6 or r["material"] in seen:
        continue
    seen.add(r["material"])
    print("    %-8s %-12s %-14s %-10s %-12s %14s %s" % (
        r["site"], r["material"], r["lot"], r["location"], r["stock_status"], r["quantity"], r["uom"]))
print("    (%d on-hand rows in all)" % len(rows))
PY
echo "======================================================"
echo

# ---- 7. the check --------------------------------------------------------
say "comparing the ERP's on-hand with the simulator's expected on-hand"
set +e
"$bin/mes-sim" compare "$work/expected.json" "$work/actual.json" 2>&1 | sed 's/^/    /'
cmp_rc=${PIPESTATUS[0]}
set -e
[ "$doubled" -eq 0 ] || die "$doubled movements were posted in more than one ERP document"
[ "$cmp_rc" -eq 0 ] || die "the ERP's on-hand differs from the expected on-hand (mes-sim compare exit $cmp_rc)"
say "OK: the ERP's on-hand equals the expected on-hand; every movement posted exactly once"
