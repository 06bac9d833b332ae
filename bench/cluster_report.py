"""The text report of bench/cluster.py, from its JSON result."""

from __future__ import annotations

from typing import Any

#: The commands shown by name per set-up; the rest are summed as "other".
TOP_COMMANDS = 8


def report(result: dict[str, Any]) -> str:
    mc = result["machine"]
    s = result["settings"]
    lines = [
        f"Callbook cluster: bench/cluster.py at {result['source']} ({result['seconds']:.0f} s)",
        f"machine  {mc['nproc']} cores ({mc['cpu']}), {mc['os']}, Python {mc['python']}, "
        f"aiohttp {mc['aiohttp']}, Valkey {mc['valkey']} (TCP, AOF everysec)",
        f"load     {s['pairs']} pairs in flight, {s['callers_per_pair']} callers + "
        f"{s['callees_per_pair']} callees each, {s['procs']} load-generator process(es); "
        f"windows {s['duration']:g} s, idle {s['idle']:g} s",
        "",
    ]
    for idle in result["nodes_only"]:
        lines.append(
            f"idle, {idle['nodes']} node(s), no devices: {idle['commands_per_s']} store "
            f"commands/s {_top(idle['by_command_per_s'])}{_noise(idle)}"
        )
    lines.append("")
    lines += _runs_table(result["modes"])
    lines.append("")
    lines += _commands(result)
    lines += _background(result)
    lines += _ceiling(result.get("ceiling"))
    lines += _failures(result["modes"])
    return "\n".join(lines)


def _noise(window: dict[str, Any]) -> str:
    others = window["cpu_percent"].get("others", 0.0)
    return f"  NOISY (others {others:.0f} %)" if window["noisy"] else ""


def _top(by_command: dict[str, float]) -> str:
    ordered = sorted(by_command.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {value:g}" for name, value in ordered[:TOP_COMMANDS])
    rest = sum(value for _, value in ordered[TOP_COMMANDS:])
    return f"({shown}{f', other {rest:.2f}' if rest else ''})"


def _runs_table(modes: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'layout':<14}{'run':<7}{'target':>7}{'calls':>7}{'fail':>5}{'set-ups/s':>10}"
        f"{'ring p50':>9}{'p99':>7}{'cycle p50':>10}{'/node-cpu-s':>12}{'vk ms':>7}"
        f"{'bots ms':>8}  cpu % of a core"
    ]
    for mode in modes:
        for run in mode["runs"]:
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in run["cpu_percent"].items())
            target = f"{run['target_per_s']:.0f}" if run["target_per_s"] else "-"
            lines.append(
                f"{mode['mode']:<14}{run['name']:<7}{target:>7}{run['calls']:>7}"
                f"{run['failed']:>5}{run['setups_per_s']:>10.1f}{run['ring_p50_ms']:>9.2f}"
                f"{run['ring_p99_ms']:>7.2f}{run['cycle_p50_ms']:>10.2f}"
                f"{run['setups_per_node_cpu_s']:>12.1f}{run['valkey_cpu_ms_per_setup']:>7.3f}"
                f"{run['bots_cpu_ms_per_setup']:>8.3f}  {cpu}{_noise(run)}"
            )
    lines.append(
        "(ring = invite sent -> callee gets incoming; cycle = invite -> both ended; "
        "/node-cpu-s = set-ups per CPU-second of all nodes; vk/bots ms = CPU ms per set-up)"
    )
    return lines


def _commands(result: dict[str, Any]) -> list[str]:
    lines = ["store commands per call set-up (window less the idle rate):"]
    for mode in result["modes"]:
        for run in mode["runs"]:
            lines.append(
                f"  {mode['mode']:<14}{run['name']:<7}{run['commands_per_setup']:>6.1f}  "
                f"{_top(run['by_command_per_setup'])}"
            )
    return lines


def _background(result: dict[str, Any]) -> list[str]:
    per_nodes = {idle["nodes"]: idle["commands_per_s"] for idle in result["nodes_only"]}
    lines = ["background (presence, heartbeats) with devices connected, no calls:"]
    for mode in result["modes"]:
        idle = mode["idle"]
        base = per_nodes.get(mode["nodes"], 0.0)
        per_device = (idle["commands_per_s"] - base) / idle["devices"] if idle["devices"] else 0
        lines.append(
            f"  {mode['mode']:<14}{idle['devices']} devices: {idle['commands_per_s']} commands/s "
            f"({base} from the nodes alone): {per_device:.3f} per device per s{_noise(idle)}"
        )
    return lines


def _ceiling(ceiling: dict[str, Any] | None) -> list[str]:
    if ceiling is None:
        return []
    tool = ceiling["redis_benchmark"]
    measured = ", ".join(f"{k} {v:,.0f}" for k, v in tool.items()) if tool else "not installed"
    return [
        "store ceiling on this machine (requests/s, 50 clients):",
        f"  redis-benchmark: {measured}",
        f"  one redis-py client, pipelines of 50 HSET: {ceiling['redis_py_pipeline_per_s']:,}",
    ]


def _failures(modes: list[dict[str, Any]]) -> list[str]:
    lines = []
    for mode in modes:
        for run in mode["runs"]:
            if run["failures"]:
                lines.append(f"FAILURES in {mode['mode']} {run['name']}: {run['failures']}")
                lines += [f"  e.g. {example}" for example in run["failure_examples"]]
    return lines
