"""Prints benchmark JSON lines as markdown: medians per case and target, then ratios side by side.

A run that failed, or had any failed operation (errors > 0), is left out of the medians: the
runs column says how many of the runs counted."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = defaultdict(list)
for r in rows:
    by[(r["case"], r["target"])].append(r)
cases = list(dict.fromkeys(r["case"] for r in rows))
targets = list(dict.fromkeys(r["target"] for r in rows))

def counts(r):
    return not r.get("failed") and not r.get("errors")

def med(rs, f):
    vals = [f(r) for r in rs if counts(r) and f(r) is not None]
    return statistics.median(vals) if vals else None

def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"

print("| case | target | runs | op/s | server CPU µs/op | p50 ms | p99 ms | RSS KiB/conn | lost/dup/reordered |")
print("|---|---|---|---|---|---|---|---|---|")
for case in cases:
    for t in targets:
        rs = by.get((case, t))
        if not rs:
            continue
        ok = [r for r in rs if counts(r)]
        lat = lambda k: (lambda r: r["latency_us"][k] / 1000 if r.get("latency_us") else None)
        ldr = "/".join(str(sum(r.get(k, 0) for r in ok)) for k in ("lost", "duplicated", "reordered"))
        print(f"| {case} | {t} | {len(ok)}/{len(rs)} | {fmt(med(ok, lambda r: r['per_second']), 0)} | "
              f"{fmt(med(ok, lambda r: r.get('server_cpu_us_per_op')))} | {fmt(med(ok, lat('p50')), 3)} | "
              f"{fmt(med(ok, lat('p99')), 3)} | {fmt(med(ok, lambda r: r.get('server_rss_kib_per_conn')), 1)} | {ldr} |")

def ratios(ours, theirs, note):
    print(f"\nratios {ours} / {theirs} (medians; {note}):\n")
    print("| case | server CPU per op | p99 latency | RSS per connection |")
    print("|---|---|---|---|")
    for case in cases:
        t, n = by.get((case, ours), []), by.get((case, theirs), [])
        if not t or not n:
            continue
        def ratio(f):
            a, b = med(t, f), med(n, f)
            return "-" if a is None or not b else f"{a / b:.2f}x"
        p99 = lambda r: r["latency_us"]["p99"] if r.get("latency_us") else None
        print(f"| {case} | {ratio(lambda r: r.get('server_cpu_us_per_op'))} | {ratio(p99)} | "
              f"{ratio(lambda r: r.get('server_rss_kib_per_conn'))} |")


if "nats" in targets and "tlschat" in targets:
    ratios("tlschat", "nats", "below 1 is better for tlschat")
if "nats" in targets and "floor" in targets:
    ratios("floor", "nats", "the least this stack can cost: tlschat cannot go below these")
if "tlschat-no-store" in targets and "tlschat" in targets:
    ratios("tlschat", "tlschat-no-store", "what the store adds: the store on over off")
if "nats-jetstream" in targets and "tlschat-fsync-never" in targets:
    ratios("tlschat-fsync-never", "nats-jetstream", "like with like: both acknowledge before syncing; below 1 is better for tlschat")
if "nats-jetstream" in targets and "tlschat" in targets:
    ratios("tlschat", "nats-jetstream", "tlschat syncing every commit to disk, beside JetStream syncing periodically")
crl = [t for t in targets if t.startswith("tlschat-crl-")]
if crl and "tlschat-no-crl" in targets:
    ratios(crl[0], "tlschat-no-crl", "what checking the revocation list costs per handshake")

