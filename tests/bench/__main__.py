"""make bench: ScaledApi against plain Kubernetes on the kind cluster of `make up` (issue 10).

    python -m tests.bench [--only throughput,scale] [--all] [--rounds N] ...   (--help lists the options)

Runs the selected sections one after the other, each in its own ``bench-...`` namespaces, deleted at
its end (also on a failure or Ctrl-C). A failed section is recorded with its error and the next one
runs. Prints the table at the end and writes every raw sample to reports/bench.json (rewritten after
every section, so that an interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from tests.bench import (
    cluster,
    many,
    metrics_overhead,
    operator_memory,
    operator_scale,
    ready_to_served,
    scale,
    throughput,
)
from tests.bench.context import Context, Options
from tests.bench.report import SectionResult, dumps, render_table, report
from tests.e2e import kube, nodes

Section = Callable[[Context, SectionResult], None]
SECTIONS: dict[str, Section] = {
    "throughput": throughput.run,
    "metrics_overhead": metrics_overhead.run,
    "scale": scale.run,
    "ready_to_served": ready_to_served.run,
    "operator": operator_memory.run,
    "many": many.run,
    "operator_scale": operator_scale.run,
}
OPT_IN = ("operator_scale",)  # long: only with --only operator_scale or --all
NODE_PORTS = (scale.NODE_PORT, scale.PLAIN_NODE_PORT)
DEFAULT_REPORT = kube.REPORTS_DIR / "bench.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = Options()
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated sections, in any order, of: {', '.join(SECTIONS)} "
        f"(default: all but {', '.join(OPT_IN)})",
    )
    parser.add_argument("--all", action="store_true", help="every section, the opt-in ones too")
    parser.add_argument("--rounds", type=int, default=d.rounds, help="A/B rounds of each comparison")
    parser.add_argument("--duration", type=float, default=d.duration_s, help="seconds of each hey run")
    parser.add_argument("--warmup", type=float, default=d.warmup_s, help="seconds of hey on each path first")
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="hey -c")
    parser.add_argument(
        "--probe-rate", type=float, default=d.probe_rate, help="probe requests/s while scaling"
    )
    parser.add_argument("--probe-workers", type=int, default=d.probe_workers, help="sequential probe clients")
    parser.add_argument(
        "--churn-cycles", type=int, default=d.churn_cycles, help="operator: create/delete cycles"
    )
    parser.add_argument(
        "--settle-seconds", type=float, default=d.settle_s, help="operator: sampling before and after churn"
    )
    parser.add_argument("--objects", type=int, default=d.objects, help="operator_scale: ScaledApis")
    parser.add_argument(
        "--patch-objects", type=int, default=d.patch_objects, help="operator_scale: objects of the spec churn"
    )
    parser.add_argument(
        "--patch-rate", type=float, default=d.patch_rate, help="operator_scale: spec changes per second"
    )
    parser.add_argument(
        "--churn-seconds",
        type=float,
        default=d.churn_seconds,
        help="operator_scale: length of the spec churn",
    )
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=d.converge_timeout_s,
        help="operator_scale: the most to wait for every object",
    )
    parser.add_argument("--report", default=str(DEFAULT_REPORT), help="where to write the JSON report")
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[str]:
    if args.all:
        return list(SECTIONS)
    if not args.only:
        return [s for s in SECTIONS if s not in OPT_IN]
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; the sections: {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def options(args: argparse.Namespace) -> Options:
    return Options(
        rounds=max(1, args.rounds),
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        probe_rate=args.probe_rate,
        probe_workers=args.probe_workers,
        churn_cycles=max(1, args.churn_cycles),
        settle_s=args.settle_seconds,
        objects=args.objects,
        patch_objects=args.patch_objects,
        patch_rate=args.patch_rate,
        churn_seconds=args.churn_seconds,
        converge_timeout_s=args.converge_timeout,
    )


def preflight(sections: Sequence[str]) -> None:
    """The cluster of `make up` answers, with the CRD and a leading operator; nothing left over."""
    result = kube.kubectl("get", "--raw", "/readyz", check=False, timeout=30.0)
    if result.returncode != 0:
        raise SystemExit(
            f"error: the kind cluster (context {kube.CONTEXT}) does not answer: {result.stderr.strip()}; "
            "run `make up` first"
        )
    if kube.get_json("crd", kube.CRD_NAME) is None:
        raise SystemExit(f"error: CRD {kube.CRD_NAME} is not installed: run `make up` first")
    if kube.get_json("deployment", kube.operator_deployment_name(), kube.OPERATOR_NAMESPACE) is None:
        raise SystemExit("error: the operator is not deployed: run `make up` first")
    leftovers = cluster.bench_namespaces()
    if leftovers:
        print(f"==> deleting namespaces an earlier run left: {', '.join(leftovers)}")
        cluster.Namespaces().delete(*leftovers)
    cluster.restore_operator()  # an interrupted operator_scale may have left it at 0
    if {"scale", "ready_to_served"}.intersection(sections):
        holders = kube.node_port_holders(NODE_PORTS)
        if holders:
            raise SystemExit(f"error: node ports {NODE_PORTS} must be free for the bench; held by {holders}")


def environment() -> dict[str, Any]:
    node_names = nodes.all_nodes()
    cores = {}
    for node in node_names:
        result = nodes.on_node(node, "nproc")
        cores[node] = int(result.stdout.strip()) if result.returncode == 0 else None
    version = kube.kubectl_json("version", timeout=30.0).get("serverVersion", {}).get("gitVersion")
    operator = kube.kubectl_json(
        "get", "deployment", kube.operator_deployment_name(), "-n", kube.OPERATOR_NAMESPACE
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": cluster.git_commit(),
        "context": kube.CONTEXT,
        "nodes": node_names,
        "node_count": len(node_names),
        "node_cores": cores,
        "host_cores": os.cpu_count(),
        "kubernetes": version,
        "operator_image": [c["image"] for c in operator["spec"]["template"]["spec"]["containers"]],
        "operator_image_ids": sorted(
            {
                s.get("imageID", "")
                for pod in kube.list_json("pods", kube.OPERATOR_NAMESPACE)
                for s in pod.get("status", {}).get("containerStatuses") or []
            }
        ),
        "operator_replicas": kube.operator_manifest_replicas(),
        "hey_node": cluster.hey_node(),
    }


def write(path: str, results: Sequence[SectionResult], env: dict[str, Any], opts: Options, argv: Any) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    document = report(results, env, {**opts.as_dict(), "argv": argv})
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(dumps(document))


def run_section(name: str, ctx: Context, result: SectionResult) -> None:
    """Run one section; record its error (Ctrl-C goes on up) and leave the cluster quiet for the next."""
    began = time.monotonic()
    print(f"==> {name}")
    try:
        SECTIONS[name](ctx, result)
    except KeyboardInterrupt:
        result.error = "interrupted (Ctrl-C)"
        raise
    except Exception as exc:  # a section's failure must not lose the others' results
        result.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        try:
            ctx.namespaces.cleanup()
            cluster.restore_operator()
        except Exception as cleanup_exc:
            result.notes.append(f"cleanup failed: {cleanup_exc}")
    finally:
        result.seconds = time.monotonic() - began


def cleanup(ctx: Context) -> None:
    """Every bench namespace gone, the operator at the manifest's replicas."""
    ctx.namespaces.cleanup()
    leftovers = cluster.bench_namespaces()
    if leftovers:
        cluster.Namespaces().delete(*leftovers)
    cluster.restore_operator()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show at once under make
    sections = selected(args)
    opts = options(args)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    preflight(sections)
    env = environment()
    ctx = Context(opts, node=env["hey_node"])
    results: list[SectionResult] = []
    interrupted = False
    print(f"==> bench: {', '.join(sections)} on {env['node_count']} node(s), {env['node_cores']} cores")
    try:
        for name in sections:
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            results.append(SectionResult(name, started=now))
            try:
                run_section(name, ctx, results[-1])
            finally:
                write(args.report, results, env, opts, argv_list)
    except KeyboardInterrupt:
        interrupted = True
        print("\n==> interrupted: cleaning up")
    finally:
        try:
            cleanup(ctx)
        finally:
            write(args.report, results, env, opts, argv_list)
            print("\n" + render_table(results))
            print(f"\n(raw samples in {args.report})")
    if interrupted:
        return 130
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
