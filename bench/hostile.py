"""The hostile-input table of bench/reliability.py: cases tried by kind, how many were
handled, and the worst wall time and peak memory of the process that handled them.

A kind is a list of Trials; TRIAL_SOURCES lists the functions that make them. Each trial
prepares its input in a fresh folder and returns the command to run on it; the command
is handled when it exits with an allowed code and prints exactly one line, no traceback.
Add a kind by adding a source.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed import hostile_edges, hostile_settings, hostile_state  # noqa: E402

# The probes' --timeout here: Kubernetes' probes in deploy/ pass the same.
PROBE_TIMEOUT = 5.0


class Trial(NamedTuple):
    """One hostile case: `prepare(folder)` builds the input and returns the command."""

    kind: str
    name: str
    prepare: Callable[[Path], list[str]]
    allowed_exits: frozenset[int]
    bound_s: float | None = None  # the command's own time bound, when it has one


class Context(NamedTuple):
    """Loopback servers the trials may point at, alive for the whole run."""

    health_url: str
    hung_urls: dict[str, str]


@contextmanager
def context() -> Iterator[Context]:
    with ExitStack() as stack:
        yield Context(stack.enter_context(hostile_state.healthy_server()),
                      stack.enter_context(hostile_state.hung_servers()))


def state_trials(ctx: Context) -> list[Trial]:
    """Every hostile state folder of testbed/hostile_state.py, with each probe that reads it."""
    kinds = hostile_state.state_cases()
    cases = [case for cases in kinds.values() for case in cases] + hostile_state.hung_cases(ctx.hung_urls)

    def trial(case: hostile_state.StateCase, probe: str) -> Trial:
        def prepare(folder: Path) -> list[str]:
            state_dir = hostile_state.build(case, folder, ctx.health_url)
            return hostile_state.probe_argv(probe, state_dir, PROBE_TIMEOUT)
        return Trial(f"state folder: {case.kind}", f"{probe} on {case.id}", prepare, case.exits, PROBE_TIMEOUT)

    return [trial(case, probe) for case in cases for probe in hostile_state.READERS[case.target]]


def command_line_trials(ctx: Context) -> list[Trial]:
    """Bad --timeout values and probe names: exit 2 with one line."""
    values = ["-1", "0", "nan", "inf", "1e400", "abc", "", "3601"]
    trials = [Trial("probe command line", f"--timeout={value}",
                    lambda folder, v=value: [sys.executable, "-m", "healthcheck", "ready", f"--timeout={v}"],
                    frozenset({2})) for value in values]
    return [*trials, Trial("probe command line", "unknown probe", lambda folder: [sys.executable, "-m", "healthcheck",
                                                                                 "bogus"], frozenset({2}))]


def settings_trials(ctx: Context) -> list[Trial]:
    """Bad settings from the environment, an env file or a secret file: `render` exits 2 with one line."""
    return [Trial(f"settings: {case.kind}", case.name, lambda folder, c=case: hostile_settings.render_argv(c, folder),
                  frozenset({2})) for case in hostile_settings.cases()]


TRIAL_SOURCES: list[Callable[[Context], list[Trial]]] = [state_trials, command_line_trials, settings_trials]


def run_trial(trial: Trial) -> dict[str, Any]:
    """Prepare, run and judge one trial; `skipped` when its input cannot be made here."""
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        try:
            argv = trial.prepare(folder)
        except PermissionError as exc:  # e.g. mknod without CAP_MKNOD
            return {"kind": trial.kind, "name": trial.name, "skipped": str(exc)}
        run = hostile_state.run_command(argv)
    finally:
        folder.chmod(0o700)
        shutil.rmtree(folder, ignore_errors=True)
    handled = run.code in trial.allowed_exits and len(run.lines) == 1 and "Traceback" not in run.stderr
    return {"kind": trial.kind, "name": trial.name, "handled": handled, "exit": run.code,
            "lines": len(run.lines), "first_line": (run.lines or [""])[0][:200], "wall_s": round(run.wall_s, 3),
            "bound_s": trial.bound_s, "peak_rss_kb": run.peak_rss_kb}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind: tried, handled, skipped, worst wall time (and its bound), peak memory, what failed."""
    kinds: dict[str, dict[str, Any]] = {}
    walls: dict[str, list[float]] = {}
    for row in rows:
        kind = kinds.setdefault(row["kind"], {"tried": 0, "handled": 0, "skipped": 0, "worst_wall_s": 0.0,
                                              "worst_case": "", "bound_s": None, "peak_rss_kb": 0, "unhandled": []})
        if "skipped" in row:
            kind["skipped"] += 1
            continue
        kind["tried"] += 1
        kind["handled"] += row["handled"]
        if not row["handled"]:
            kind["unhandled"].append(f"{row['name']}: exit {row['exit']}, {row['lines']} lines: {row['first_line']}")
        if row["wall_s"] >= kind["worst_wall_s"]:
            kind.update(worst_wall_s=row["wall_s"], worst_case=row["name"], bound_s=row["bound_s"])
        kind["peak_rss_kb"] = max(kind["peak_rss_kb"], row["peak_rss_kb"])
        walls.setdefault(row["kind"], []).append(row["wall_s"])
    for name, values in walls.items():
        kinds[name]["median_wall_s"] = round(statistics.median(values), 3)
    return kinds


def run_hostile() -> dict[str, Any]:
    """Every trial of every source, one process at a time."""
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with context() as ctx:
        trials = [trial for source in TRIAL_SOURCES for trial in source(ctx)]
        rows = [run_trial(trial) for trial in trials]
    over = [f"{row['name']} ({row['wall_s']:.2f} s, exit {row['exit']}: {row['first_line'][:80]})" for row in rows
            if row.get("bound_s") and row["wall_s"] > row["bound_s"]]
    return {"kinds": summarize(rows), "rows": rows, "seconds": round(time.monotonic() - started, 1),
            "probe_timeout_s": PROBE_TIMEOUT, "over_bound": over, "cores": os.cpu_count(),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]}


def markdown(hostile: dict[str, Any]) -> str:
    """The hostile-input section of bench/reliability.md."""
    kinds = hostile["kinds"]
    tried, handled = sum(k["tried"] for k in kinds.values()), sum(k["handled"] for k in kinds.values())
    out = [f"## Hostile input: {handled} of {tried} handled\n",
           f"Date {hostile['date']}, commit `{hostile['commit']}`. Each case is a fresh process on a fresh "
           f"input (probes with `--timeout {hostile['probe_timeout_s']:g}`, against a loopback `/health` "
           "that answers unless the case says otherwise); handled = an allowed exit code (0 or 1 for a probe, "
           "2 for a bad command line), exactly one line, no traceback. Wall time is the whole process, "
           "interpreter start included; memory is its peak RSS (`wait4`, forked from a small launcher whose "
           "own ~5 MiB is the floor). Cases: `testbed/hostile_state.py` (state folders) and "
           "`testbed/hostile_settings.py` (settings, run as `render` on the NPU), table: `bench/hostile.py`. "
           f"Load average {hostile['load_average'][0]} at the start, {hostile['load_average'][1]} at the end, "
           f"on {hostile['cores']} cores.\n",
           "| kind | tried | handled | median wall s | worst wall s (bound) | worst case | peak RSS MiB |",
           "|---|---|---|---|---|---|---|"]
    for name, kind in kinds.items():
        bound = f" ({kind['bound_s']:g})" if kind["bound_s"] else ""
        skipped = f" ({kind['skipped']} could not be made here)" if kind["skipped"] else ""
        out.append(f"| {name} | {kind['tried']}{skipped} | {kind['handled']} | {kind.get('median_wall_s', 0):.2f} | "
                   f"{kind['worst_wall_s']:.2f}{bound} | "
                   f"{kind['worst_case'].replace('|', '/')} | {kind['peak_rss_kb'] / 1024:.1f} |")
    unhandled = [line for kind in kinds.values() for line in kind["unhandled"]]
    out += ["", "Not handled:" if unhandled else "Every case was handled.", *[f"- {line}" for line in unhandled]]
    over = hostile["over_bound"]
    out.append(f"\n{len(over)} probe runs took longer than their `--timeout`" + (
        " (the probe counts its interpreter's start against the timeout, and its watchdog ends it at the "
        "deadline, so a run over it is one the machine did not schedule in time; see the load average):"
        if over else "."))
    out += [f"- {line}" for line in over]
    return "\n".join(out) + "\n"


# --- round three: the edges around the settings (testbed/hostile_edges.py) ---------------

def checkout_files() -> set[str]:
    """Untracked and changed files of the checkout: a case that writes into it shows here."""
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True)
    return set(done.stdout.splitlines())


def run_round_three() -> dict[str, Any]:
    """Every round-three case, one process at a time, each in a fresh folder."""
    started, before = time.monotonic(), checkout_files()
    rows = []
    with hostile_edges.servers() as servers:
        for case in hostile_edges.all_cases(servers):
            folder = Path(tempfile.mkdtemp(prefix="edge-"))
            try:
                outcome = hostile_edges.run_case(case, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            rows.append({"kind": case.kind, "name": case.name, "handled": outcome.handled,
                         "traceback": outcome.traceback, "hang": outcome.hang, "secret": outcome.secret_printed,
                         "broke": outcome.broke, "exit": outcome.run.code, "lines": len(outcome.run.lines),
                         "first_line": (outcome.run.lines or [""])[0][:200], "wall_s": round(outcome.run.wall_s, 3)})
    return {"rows": rows, "seconds": round(time.monotonic() - started, 1),
            "checkout_written": sorted(checkout_files() - before)}


def round_three_markdown(report: dict[str, Any]) -> str:
    """The round-three section of bench/reliability.md: cases and outcomes per class."""
    rows = report["rows"]
    kinds = dict.fromkeys(row["kind"] for row in rows)
    out = [f"## Hostile input, round three: {sum(r['handled'] for r in rows)} of {len(rows)} handled\n",
           f"Date {report['date']}, commit `{report['commit']}`, {report['seconds']} s. The edges around the "
           "settings (issue 30), by class; cases: `testbed/hostile_edges.py`. Each case is a fresh process on "
           "a fresh input in its own folder; handled = an allowed exit, no traceback, no hang, one line (any number "
           "for a table such as the doctor's), no secret of the case printed, no terminal control character "
           "printed, and its post-condition held (nothing written where it must not be, no bystander signalled).\n",
           "| class | cases | handled | tracebacks | hangs | writes or signals where none belong | secrets printed "
           "| worst wall s |", "|---|---|---|---|---|---|---|---|"]
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        out.append(f"| {kind} | {len(mine)} | {sum(r['handled'] for r in mine)} | {sum(r['traceback'] for r in mine)} "
                   f"| {sum(r['hang'] for r in mine)} | {sum(bool(r['broke']) for r in mine)} "
                   f"| {sum(r['secret'] for r in mine)} | {max(r['wall_s'] for r in mine):.2f} |")
    unhandled = [f"- {r['kind']}: {r['name']}: exit {r['exit']}, {r['lines']} lines, {r['broke'] or ''} "
                 f"{r['first_line']}" for r in rows if not r["handled"]]
    written = report["checkout_written"]
    out += ["", "Not handled:" if unhandled else "Every case was handled.", *unhandled,
            f"\nFiles the run left in the checkout: {', '.join(written) if written else 'none'}."]
    return "\n".join(out) + "\n"
