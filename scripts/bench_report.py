#!/usr/bin/env python3
"""Turns scripts/bench.sh's raw JSON lines into the markdown tables of docs/performance.md,
checks the aims of issue 11, and draws the growth plot (when matplotlib is importable).

Usage: scripts/bench_report.py RESULTS.jsonl [--cores N --duration 5s --warmup 1s
       --rounds 3 --client rmcp --peer "mcp-proxy 0.6.0" --plot out.png]
"""
import argparse
import json

MANIFOLD, PEER, CEILING = "manifold/everything", "mcp-proxy/everything", "stdio-direct/everything"
FLOOR = "floor/fixture-stdio"


def median_run(runs):
    """The run whose calls/s is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["calls_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def fmt(value, spec, missing="n/a"):
    return missing if value is None else format(value, spec)


def load_rows(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def call_points(rows):
    runs = {}
    for r in rows:
        if "concurrency" in r and not r["label"].startswith(("growth", "instr/")):
            runs.setdefault((r["label"], r["concurrency"]), []).append(r)
    return {key: median_run(v) for key, v in runs.items()}, runs


def print_calls(points, runs, args):
    if not points:
        return
    labels = list(dict.fromkeys(label for label, _ in points))
    levels = sorted({c for _, c in points})
    print(f"\n{args.cores} cores, {args.duration} per point after {args.warmup} warm-up, "
          f"{args.rounds} interleaved round(s), {args.client} client, "
          'tools/call echo with {"message":"hi"}; each point is the round with the median '
          "calls/s; load = 1-minute load average when that run started\n")
    print("| scenario | c | calls/s | p50 ms | p90 ms | p99 ms | gateway CPU µs/call | "
          "gateway cores | errors | load | calls/s of every round |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for label in labels:
        for c in levels:
            r = points.get((label, c))
            if not r:
                continue
            every = " / ".join(f"{x['calls_per_s']:,.0f}" for x in runs[(label, c)])
            print(f"| {label} | {c} | {r['calls_per_s']:,.0f} | {r['p50_ms']:.3f} | "
                  f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
                  f"{fmt(r.get('cpu_us_per_call'), '.1f', '—')} | "
                  f"{fmt(r.get('cpu_cores'), '.2f', '—')} | {r['errors']} | "
                  f"{fmt(r.get('load1'), '.2f')} | {every} |")
    if not any(label == PEER for label, _ in points):
        return
    print(f"\nSide by side ({args.peer} is the peer; the ceiling is server-everything driven "
          "over stdio with no gateway):\n")
    print("| c | Manifold calls/s (p50) | peer calls/s (p50) | Manifold ÷ peer | "
          "÷ peer, round by round | "
          "Manifold CPU µs/call | peer CPU µs/call | ceiling calls/s (p50) |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|")
    for c in levels:
        m, p, ceil = points.get((MANIFOLD, c)), points.get((PEER, c)), points.get((CEILING, c))
        if not (m and p):
            continue
        ceiling = f"{ceil['calls_per_s']:,.0f} ({ceil['p50_ms']:.2f} ms)" if ceil else "n/a"
        print(f"| {c} | {m['calls_per_s']:,.0f} ({m['p50_ms']:.2f} ms) | "
              f"{p['calls_per_s']:,.0f} ({p['p50_ms']:.2f} ms) | "
              f"{m['calls_per_s'] / p['calls_per_s']:.2f}× | {paired(runs, c)} | "
              f"{fmt(m.get('cpu_us_per_call'), '.1f')} | {fmt(p.get('cpu_us_per_call'), '.1f')} | "
              f"{ceiling} |")


def paired(runs, c):
    """Manifold's calls/s over the peer's within each round (the two ran minutes apart at
    most, so drift on the machine cancels), and the median of those ratios."""
    ms, ps = runs.get((MANIFOLD, c), []), runs.get((PEER, c), [])
    ratios = [m["calls_per_s"] / p["calls_per_s"] for m, p in zip(ms, ps) if p["calls_per_s"]]
    if not ratios:
        return "n/a"
    middle = sorted(ratios)[len(ratios) // 2]
    return " / ".join(f"{r:.2f}" for r in ratios) + f" (median {middle:.2f})"


def print_instr(rows):
    instr = [r for r in rows if str(r.get("label", "")).startswith("instr/")]
    if not instr:
        return
    print("\nInstructions per tools/call of the gateway process (valgrind callgrind, fixture over "
          "stdio, c = 1, 10 s after a 3 s warm-up; independent of the machine's load)\n")
    print("| gateway | calls | instructions per call |")
    print("|---|---:|---:|")
    for r in instr:
        print(f"| {r['label'][len('instr/'):]} | {r['calls']:,} | {r['instr_per_call']:,.0f} |")


def print_others(rows):
    print_instr(rows)
    for r in rows:
        label = r.get("label")
        if label == "idle-rss-10-stdio-backends":
            parts = ""
            if "anon_kb" in r and "file_kb" in r:
                parts = (f": {r['anon_kb'] * 1024 / 1e6:.1f} MB anonymous (heap, stacks), "
                         f"{r['file_kb'] * 1024 / 1e6:.1f} MB file-backed (mapped pages of the binary and its shared libraries)")
            print(f"\nIdle RSS of the gateway with 10 stdio fixture backends: "
                  f"{r['rss_kb'] * 1024 / 1e6:.1f} MB ({r['rss_kb']} KiB; load {r['load1']}){parts}")
        elif label == "idle-sessions":
            print(f"\nIdle sessions: {r['sessions']:,}, each with its GET stream open: gateway RSS "
                  f"{r['rss_before_kb']:,} → {r['rss_after_kb']:,} KiB, "
                  f"{r['kb_per_session']:.1f} KB per session (load {r['load1']})")
        elif label == "list-change":
            print(f"\nOne list change to {r['sessions']:,} sessions: first → last delivery "
                  f"{r['spread_ms']:.1f} ms; last delivery {r['last_ms']:.1f} ms after the "
                  f"change, including the 25 ms coalescing window (load {r['load1']})")
        elif label == "messaging":
            print(f"\nMessaging, {r['store']} store: {r['sends_per_s']:,.0f} send_message/s with "
                  f"{r['workers']} senders; round trip p50 {r['round_trip_p50_ms']:.2f} ms "
                  f"(load {r['load1']})")


def growth(rows, plot):
    lists = [r for r in rows if r.get("label") == "growth-list"]
    sessions = [r for r in rows if r.get("label") == "growth-sessions"]
    if lists:
        print("\nHow cost grows: tools/list through the gateway (c = 1) and the gateway's RSS\n")
        print("| backends | tools in total | tools/list p50 ms | p99 ms | list/s | gateway RSS MB | load |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in sorted(lists, key=lambda r: (r["backends"], r["tools"])):
            print(f"| {r['backends']} | {r['tools']:,} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                  f"{r['calls_per_s']:,.0f} | {r['rss_kb'] * 1024 / 1e6:.1f} | {r['load1']} |")
    if sessions:
        print("\nHow cost grows: calls/s with concurrent sessions (one worker each, fixture over stdio)\n")
        print("| sessions | calls/s | p50 ms | p99 ms | gateway CPU µs/call | load |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in sorted(sessions, key=lambda r: r["concurrency"]):
            print(f"| {r['concurrency']} | {r['calls_per_s']:,.0f} | {r['p50_ms']:.3f} | "
                  f"{r['p99_ms']:.3f} | {fmt(r.get('cpu_us_per_call'), '.1f')} | {r['load1']} |")
    if not (lists or sessions) or not plot:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(no matplotlib: plot skipped)")
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for n in sorted({r["backends"] for r in lists}):
        pts = sorted((r["tools"], r["p50_ms"], r["rss_kb"] * 1024 / 1e6)
                     for r in lists if r["backends"] == n)
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{n} backends")
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=f"{n} backends")
    for ax, title, ylabel in ((axes[0], "tools/list latency (p50, c = 1)", "ms"),
                              (axes[1], "gateway RSS", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log" if ax is axes[0] else "linear")
        ax.set_xlabel("tools in total")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    pts = sorted((r["concurrency"], r["calls_per_s"]) for r in sessions)
    axes[2].plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("concurrent sessions (one call in flight each)")
    axes[2].set_ylabel("calls/s")
    axes[2].set_title("tools/call throughput (fixture over stdio)")
    axes[2].grid(True, which="both", alpha=0.3)
    fig.suptitle("Manifold: how cost grows")
    fig.tight_layout()
    fig.savefig(plot, dpi=100)
    print(f"\nPlot: {plot}")


def aims(rows, points):
    checks = []

    def check(name, value, spec, ok):
        verdict = "n/a" if value is None else ("PASS" if ok(value) else "FAIL")
        checks.append((name, fmt(value, spec), verdict))

    def get(label, c, field):
        r = points.get((label, c))
        return r.get(field) if r else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    for c, need in ((1, 1.2), (8, 1.2), (64, 1.0)):
        check(f"calls/s vs peer at c={c} (>= {need}x)",
              ratio(get(MANIFOLD, c, "calls_per_s"), get(PEER, c, "calls_per_s")), ".2f",
              lambda v, need=need: v >= need)
    check("p50 at c=1 vs peer (<= 0.8x)",
          ratio(get(MANIFOLD, 1, "p50_ms"), get(PEER, 1, "p50_ms")), ".2f", lambda v: v <= 0.8)
    for c in (1, 8, 64):
        check(f"gateway CPU per call vs peer at c={c} (<= 1x)",
              ratio(get(MANIFOLD, c, "cpu_us_per_call"), get(PEER, c, "cpu_us_per_call")), ".2f",
              lambda v: v <= 1.0)
    for backend in ("fixture-stdio", "fixture-http"):
        a, b = get(f"manifold/{backend}", 1, "p50_ms"), get("fixture-direct", 1, "p50_ms")
        check(f"{backend}: added p50 at c=1 (<= 50 us)",
              (a - b) * 1000 if a is not None and b is not None else None, ".0f",
              lambda v: v <= 50)
        check(f"{backend}: throughput vs direct at c=64 (>= 60%)",
              ratio(get(f"manifold/{backend}", 64, "calls_per_s"),
                    get("fixture-direct", 64, "calls_per_s")), ".0%", lambda v: v >= 0.6)
    # The least relay (examples/floor_relay.rs): what the process hop alone costs here.
    a, b = get(FLOOR, 1, "p50_ms"), get("fixture-direct", 1, "p50_ms")
    if a is not None and b is not None:
        checks.append(("floor relay over stdio: added p50 at c=1 (reference)",
                       fmt((a - b) * 1000, ".0f"), "info"))
        checks.append(("floor relay over stdio: throughput vs direct at c=64 (reference)",
                       fmt(ratio(get(FLOOR, 64, "calls_per_s"),
                                 get("fixture-direct", 64, "calls_per_s")), ".0%"), "info"))
    instr = {r["label"]: r["instr_per_call"] for r in rows if "instr_per_call" in r}
    if "instr/manifold" in instr and "instr/mcp-proxy" in instr:
        check("instructions per call vs peer (<= 1x)",
              instr["instr/manifold"] / instr["instr/mcp-proxy"], ".2f", lambda v: v <= 1.0)
    for r in rows:
        label = r.get("label")
        if label == "idle-rss-10-stdio-backends":
            check("idle RSS, 10 stdio backends (<= 15 MB) [MB]", r["rss_kb"] * 1024 / 1e6, ".1f",
                  lambda v: v <= 15)
        elif label == "idle-sessions":
            check(f"KB per idle session at {r['sessions']:,} (<= 50)", r["kb_per_session"], ".1f",
                  lambda v: v <= 50)
        elif label == "messaging":
            check("send_message/s, 8 senders, memory (>= 5,000)", r["sends_per_s"], ",.0f",
                  lambda v: v >= 5000)
        elif label == "list-change":
            check("list change to 1,000 sessions, first to last (<= 50 ms) [ms]",
                  r["spread_ms"], ".1f", lambda v: v <= 50)
    print("\n| aim (issue 11) | measured | result |")
    print("|---|---:|---|")
    for name, value, verdict in checks:
        print(f"| {name} | {value} | {verdict} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--cores", default="?")
    ap.add_argument("--duration", default="?")
    ap.add_argument("--warmup", default="?")
    ap.add_argument("--rounds", default="?")
    ap.add_argument("--client", default="rmcp")
    ap.add_argument("--peer", default="mcp-proxy")
    ap.add_argument("--plot", default="")
    args = ap.parse_args()
    rows = load_rows(args.results)
    points, runs = call_points(rows)
    print_calls(points, runs, args)
    print_others(rows)
    growth(rows, args.plot)
    aims(rows, points)
    errors = sum(r["errors"] for r in points.values())
    if errors:
        print(f"\nWARNING: {errors} failed calls in the reported points; see the raw results.")


if __name__ == "__main__":
    main()
