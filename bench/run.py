"""One command for every benchmark: `python -m bench.run --events 200000 --out docs/performance.md`.

Starts Apache Kafka (the test suite's jars: scripts/install-test-deps) and Redis on loopback,
generates the simulated CRM company's events (crmkpi/simulate.py), and measures in one run:

  (a) raw aiokafka consume (getmany + orjson.loads per record, one event per record);
  (b) Quix Streams, tumbling 1-minute count by key, on the same records;
  (c) crm-kpi worker, full KPI set, fed by its own publisher (batched records, as replay);
  (c2) crm-kpi worker fed one event per record, keyed by entity (a third-party producer);
  (c) and (c2) once more on the mypyc-compiled build of the same source (`--builds`, default
      both: the tree is copied and compiled once, tests/support/compiled.py, then measured in the same
      repeat loop right after the pure Python runs; everything else runs on the pure build);
  (d) the gateway: signed POST /webhooks/events of 100 events (wrk, else aiohttp);
  (e) end-to-end latency at steady 1k and 10k ev/s (webhook 202 -> visible in /api/kpis);
  (f) worker memory per 100k subscriptions and per 100k deals;
  (g) scale-out with 1, 2 and 4 workers (4 partitions).

Results replace the block between the bench markers of `--out` (the rest of the file is kept)
and are also written as JSON next to the work directory. Everything is bounded in time and
runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Throughput, dump, generate_events, log, machine, services
from tests.support.compiled import compiled_tree

BEGIN = "<!-- bench:begin (written by python -m bench.run; edit outside this block) -->"
END = "<!-- bench:end -->"
SECTIONS = ("raw", "quix", "engine", "single", "gateway", "latency", "memory", "scale")
BUILDS = ("pure", "compiled")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events per throughput run")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to update")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--builds", default=",".join(BUILDS),
                        help=f"comma-separated subset of {BUILDS}: the builds (c) and (c2) run on "
                             "(compiled: mypyc, needs a C compiler and mypy)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a)-(c2); the best of each is kept")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of each latency run")
    parser.add_argument("--rates", default="1000,10000", help="end-to-end latency rates, ev/s")
    parser.add_argument("--memory-entities", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4", help="scale-out worker counts")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy record the pure build's worker of (c) into this file "
                             "(raw collapsed stacks)")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    asked = {b for b in args.builds.split(",") if b}
    builds = [b for b in BUILDS if b in asked]
    unknown = asked - set(BUILDS)
    if unknown or not builds:
        parser.error(f"unknown builds {sorted(unknown)}" if unknown else "--builds: none given")
    args.builds = builds
    work = args.work or Path(tempfile.mkdtemp(prefix="crmkpi-bench-"))
    command = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    from bench.common import ENGINE_DIR

    results: dict[str, Any] = {"command": command, "machine": machine(), "events": args.events,
                               "engine_dir": str(ENGINE_DIR), "builds": builds,
                               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    began = time.monotonic()
    try:
        run_all(args, only, work, results)
    finally:
        results["wall_seconds"] = round(time.monotonic() - began, 1)
        dump(work / "results.json", results)
        log(f"results: {work / 'results.json'}")
    report = render(results)
    print(report)
    if args.out:
        write_block(args.out, report)
        log(f"updated {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def best(runs: list[Throughput]) -> dict[str, Any]:
    top = max(runs, key=lambda r: r.rate)
    return {"events": top.events, "seconds": round(top.seconds, 3), "rate": round(top.rate),
            "runs": [round(r.rate) for r in runs]}


def run_all(args: argparse.Namespace, only: set[str], work: Path, results: dict[str, Any]) -> None:
    from bench import throughput
    from bench.common import ENGINE_DIR

    pure = "pure" in args.builds
    tree = None
    if "compiled" in args.builds and only & {"engine", "single"}:
        log(f"building the compiled (mypyc) tree of {ENGINE_DIR}")
        tree = compiled_tree(ENGINE_DIR, work)
        log(f"compiled build ready in {tree}")
        results["compiled_tree"] = str(tree)
    log(f"generating {args.events} events")
    events = generate_events(args.events)
    with services(work) as svc:
        if only & {"raw", "quix"}:
            inputs = throughput.prepare(svc, events)
            results["produce_single_seconds"] = round(inputs.produce_single_s, 2)
        for _ in range(args.repeat):
            if "raw" in only:
                log("(a) raw aiokafka consume")
                results.setdefault("_raw", []).append(throughput.raw_bound(svc, inputs))
            if "quix" in only:
                log("(b) Quix Streams windowed count")
                results.setdefault("_quix", []).append(throughput.quix(svc, inputs))
            if "engine" in only and pure:
                log("(c) crm-kpi worker, batched records")
                results.setdefault("_engine", []).append(throughput.engine_on(
                    svc, events, single=False, profile=args.profile))
            if "engine" in only and tree is not None:
                log("(c) crm-kpi worker, batched records, compiled build")
                results.setdefault("_engine_compiled", []).append(throughput.engine_on(
                    svc, events, single=False, engine_dir=tree))
            if "single" in only and pure:
                log("(c2) crm-kpi worker, one event per record")
                results.setdefault("_single", []).append(throughput.engine_on(
                    svc, events, single=True,
                    profile=args.profile and args.profile.with_suffix(".single.txt")))
            if "single" in only and tree is not None:
                log("(c2) crm-kpi worker, one event per record, compiled build")
                results.setdefault("_single_compiled", []).append(throughput.engine_on(
                    svc, events, single=True, engine_dir=tree))
        for key in ("raw", "quix", "engine", "single", "engine_compiled", "single_compiled"):
            if f"_{key}" in results:
                results[key] = best(results.pop(f"_{key}"))
        if "gateway" in only:
            from bench.gateway import gateway_load

            log("(d) gateway")
            fresh = generate_events(min(args.events, 300_000), seed=11)
            g = gateway_load(svc, fresh)
            results["gateway"] = {"accepted": g.accepted, "seconds": round(g.seconds, 2),
                                  "rate": round(g.rate),
                                  "requests": g.requests, "non2xx": g.non2xx, "p50_ms": round(g.p50_ms, 1),
                                  "p99_ms": round(g.p99_ms, 1), "tool": g.tool}
        if "latency" in only:
            from bench.gateway import end_to_end

            rates = [int(r) for r in args.rates.split(",")]
            fresh = generate_events(int(sum(rates) * args.latency_seconds) + 1000, seed=13)
            results["latency"] = [
                {"rate": r.rate, "achieved": round(r.achieved_rate), "samples": len(r.samples),
                 "p50_s": round(r.p50, 3), "p99_s": round(r.p99, 3), "max_s": round(max(r.samples), 3)
                 if r.samples else None}
                for r in end_to_end(svc, fresh, rates, args.latency_seconds)]
        if "memory" in only:
            from bench.memory import memory_per_entity

            results["memory"] = [
                {"kind": m.kind, "entities": m.entities, "rss_before_mib": round(m.rss_before_kib / 1024),
                 "rss_after_mib": round(m.rss_after_kib / 1024),
                 "bytes_per_entity": round(m.bytes_per_entity)}
                for m in memory_per_entity(svc, args.memory_entities)]
        if "scale" in only:
            scale = {}
            for count in [int(w) for w in args.workers.split(",")]:
                log(f"(g) {count} worker(s)")
                scale[str(count)] = best([throughput.engine_on(svc, events, single=False, workers=count)])
            results["scale"] = scale


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def render(r: dict[str, Any]) -> str:
    rate = lambda key: (r.get(key) or {}).get("rate")  # noqa: E731
    raw, quix, engine, single = rate("raw"), rate("quix"), rate("engine"), rate("single")
    lines = [BEGIN, "", f"Measured {r['started']} with `{r['command']}` "
             f"({r['events']} events, {r.get('wall_seconds', '?')} s in all).", ""]
    m = r["machine"]
    lines += ["| machine | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in m.items()]
    lines += ["", "### Throughput (one worker process, 4 partitions)", "",
              "| run | events | seconds | events/s | runs |", "|---|---|---|---|---|"]
    names = {"raw": "(a) raw aiokafka getmany + orjson.loads, 1 event/record",
             "quix": "(b) Quix Streams tumbling 1-min count by key, 1 event/record",
             "engine": "(c) crm-kpi worker, full KPI set, batched records (replay)",
             "engine_compiled": "(c) crm-kpi worker, full KPI set, batched records (replay), "
                                "compiled (mypyc)",
             "single": "(c2) crm-kpi worker, full KPI set, 1 event/record",
             "single_compiled": "(c2) crm-kpi worker, full KPI set, 1 event/record, compiled (mypyc)"}
    for key, name in names.items():
        if key in r:
            t = r[key]
            lines.append(f"| {name} | {t['events']} | {t['seconds']} | **{t['rate']:,}** | {t['runs']} |")
    lines += ["", "### Goals (issue 9)", "", "| goal | measured | |", "|---|---|---|"]
    # Each throughput goal for the pure build, then (when measured) for the compiled one.
    compiled = "engine_compiled" in r or "single_compiled" in r
    builds = [("", engine, single)] + (
        [(", compiled build", rate("engine_compiled"), rate("single_compiled"))] if compiled else [])
    for label, c, _ in builds:
        lines.append(f"| (c) ≥ 5x Quix Streams{label} | {_ratio(c, quix)} | "
                     f"{_met(c / quix >= 5 if c and quix else None)} |")
    for label, c, _ in builds:
        lines.append(f"| (c) ≥ 25% of the raw consume bound{label} | {100 * c / raw:.1f}% |"
                     f" {_met(c / raw >= 0.25)} |" if c and raw
                     else f"| (c) ≥ 25% of raw{label} | n/a | n/a |")
    for label, _, c2 in builds:
        lines.append(f"| (c2) ≥ Quix Streams (1 event/record){label} | {_ratio(c2, quix)} | "
                     f"{_met(c2 >= quix if c2 and quix else None)} |")
    for item in r.get("latency", []):
        bound = 1.0 if item["rate"] <= 1000 else 2.0
        ok = item["p99_s"] <= bound if item["samples"] and math.isfinite(item["p99_s"]) else False
        lines.append(f"| end-to-end p99 ≤ {bound:.0f} s at {item['rate']:,} ev/s | p99 {item['p99_s']} s "
                     f"(p50 {item['p50_s']} s, {item['samples']} markers, "
                     f"load {item['achieved']:,} ev/s) | {_met(ok)} |")
    scale = r.get("scale", {})
    if "1" in scale and "2" in scale:
        ratio = scale["2"]["rate"] / scale["1"]["rate"]
        lines.append(f"| 2 workers ≥ 1.7x one | {ratio:.2f}x | {_met(ratio >= 1.7)} |")
    if "gateway" in r:
        g = r["gateway"]
        lines += ["", "### Gateway (d)", "",
                  f"Signed `POST /webhooks/events`, 100 events per request, {g['tool']}, 16 connections: "
                  f"**{g['rate']:,} accepted events/s** ({g['accepted']:.0f} events in {g['seconds']} s, "
                  f"{g['requests']} requests, {g['non2xx']} not 2xx), latency p50 {g['p50_ms']} ms, "
                  f"p99 {g['p99_ms']} ms per request."]
    if "memory" in r:
        lines += ["", "### Memory per tracked entity (f)", "",
                  "| entities | RSS before (MiB) | RSS after (MiB) | bytes per entity |", "|---|---|---|---|"]
        for item in r["memory"]:
            lines.append(f"| {item['entities']:,} {item['kind']} | {item['rss_before_mib']} | "
                         f"{item['rss_after_mib']} | {item['bytes_per_entity']:,} |")
    if scale:
        lines += ["", "### Scale-out (g), batched records, 4 partitions", "",
                  "| workers | events/s | vs one |", "|---|---|---|"]
        for count, t in scale.items():
            lines.append(f"| {count} | {t['rate']:,} | {t['rate'] / scale['1']['rate']:.2f}x |"
                         if "1" in scale else f"| {count} | {t['rate']:,} | |")
    lines += ["", END]
    return "\n".join(lines)


def write_block(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
