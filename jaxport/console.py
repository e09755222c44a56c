"""What the command line shows people: live progress and the per-target results table.

Both render with `rich` on a terminal and as plain, greppable lines otherwise (a pipe, a log
file, CI), decided per stream by `isatty()`. The same rows feed both renderings
(`target_rows`), for a local conversion's report and for a service job's record alike (a job
record carries the report's `targets`, `reference` and `warnings`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from jaxport.timings import summary_line


class Progress:
    """`progress(stage, fraction, message)` on `stream` (default stderr): a rich progress bar
    on a terminal, one line per message change otherwise. Call `close()` (or send stage
    "done") to end the bar."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last = ""
        self._bar = None
        self._task = None

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if self.tty:
            self._draw(stage, fraction, message)
        elif message != self.last:
            elapsed = time.monotonic() - self.start
            self.stream.write(f"[{fraction:4.0%} {elapsed:6.1f}s] {stage}: {message}\n")
            self.stream.flush()
        self.last = message
        if stage == "done":
            self.close()

    def _draw(self, stage: str, fraction: float, message: str) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        if self._bar is None:
            self._bar = Bar(TextColumn("{task.fields[stage]:<10}"), BarColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                            TextColumn("{task.description}"),
                            console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("", total=1.0, stage=stage)
        self._bar.update(self._task, completed=fraction, description=escape(message[:70]),
                         stage=escape(stage))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@dataclass
class TargetRow:
    """One requested target as the table shows it."""

    target: str
    status: str  # "ok" | "FAILED"
    max_rel_err: float | None
    bytes: int | None
    seconds: float | None  # build + verify
    source: str
    note: str  # the artifact path when ok; else "[stage] message"
    hint: str = ""


_RUNTIMES = {"litert": "LiteRT", "litertjs": "LiteRT.js"}  # report.json runtimes keys, for people


def quantization_note(q: dict) -> str:
    """`model.int8.tflite 41 KB, worst SQNR 31.2 dB, top-1 1.00`: the quantized artifact."""
    sqnrs = [o["sqnr_db"] for o in q["outputs"].values() if o["sqnr_db"] is not None]
    top1 = [o["top1"] for o in q["outputs"].values() if "top1" in o]
    parts = [f"{q['path']} {fmt_bytes(q['bytes'])}",
             f"worst SQNR {min(sqnrs):.1f} dB" if sqnrs else "exact"]
    if top1:
        parts.append(f"top-1 {min(top1):.2f}")
    return ", ".join(parts)


def target_rows(report: dict) -> list[TargetRow]:
    """The rows of `report["targets"]` that were requested (skipped ones are left out)."""
    rows = []
    for name, result in report.get("targets", {}).items():
        if result["status"] == "skipped":
            continue
        parity = result.get("parity") or {}
        seconds = [s for s in (result.get("seconds"), result.get("verify_seconds")) if s is not None]
        err = result.get("error") or {}
        ok = result["status"] == "ok"
        note = result.get("path") or "" if ok else f"[{err.get('stage')}] {err.get('message')}"
        if ok and result.get("source_reason"):
            note += f" ({result['source']} path: {result['source_reason']})"
        verified_in = [_RUNTIMES.get(k, k) for k, r in result.get("runtimes", {}).items()
                       if r.get("status") == "ok"]
        if ok and len(verified_in) > 1:
            note += f" (verified in {' and '.join(verified_in)})"
        if ok and result.get("quantization"):
            note += f" + {quantization_note(result['quantization'])}"
        rows.append(TargetRow(name, "ok" if ok else "FAILED", parity.get("max_rel_err"),
                              result.get("bytes"), round(sum(seconds), 2) if seconds else None,
                              result.get("source") or "", note, err.get("hint") or ""))
    return rows


def summarize(report: dict, where: str, stream: TextIO | None = None) -> int:
    """Print the goldens check, the per-target table, the warnings, the seconds per stage and
    where the report is
    (`where`: a path or URL) to `stream` (default stdout); return the CLI exit code (1 when a
    requested target failed, else 0)."""
    stream = stream or sys.stdout
    rows = target_rows(report)
    lines = [f"reference   {function}: the JAX function "
             f"{'matches' if parity['passed'] else 'DOES NOT match'} samples.npz's expected "
             f"outputs (max err ÷ scale {fmt_err(parity['max_rel_err'])})"
             for function, parity in report.get("reference", {}).items()]
    tail = [summary_line(report["timings"], report.get("seconds"))] if report.get("timings") else []
    tail.append(f"report: {where}")
    if stream.isatty():
        _rich_table(rows, lines, report.get("warnings", []), tail, stream)
    else:
        for row in rows:
            lines.append(_plain_row(row))
            if row.hint:
                lines.append(f"{'':<20}hint: {row.hint}")
        lines += [f"warning: {w}" for w in report.get("warnings", [])]
        print("\n".join(lines + tail), file=stream)
    return 1 if any(r.status != "ok" for r in rows) else 0


def _plain_row(row: TargetRow) -> str:
    if row.status != "ok":
        return f"{row.target:<11} FAILED  {row.note}"
    return (f"{row.target:<11} ok      max err ÷ scale {fmt_err(row.max_rel_err):<8} "
            f"{fmt_bytes(row.bytes):>9} {fmt_seconds(row.seconds):>7}  "
            f"{row.source or '-':<8} {row.note}")


def _rich_table(rows: list[TargetRow], head: list[str], warnings: list[str], tail: list[str],
                stream: TextIO) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=stream)
    for line in head:
        console.print(line, markup=False)
    table = Table(show_edge=False)
    for column, justify in (("target", "left"), ("status", "left"), ("max err ÷ scale", "right"),
                            ("bytes", "right"), ("seconds", "right"), ("source", "left"),
                            ("artifact / error", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        status = "[green]ok[/]" if row.status == "ok" else "[bold red]FAILED[/]"
        note = escape(row.note + (f"\nhint: {row.hint}" if row.hint else ""))
        table.add_row(escape(row.target), status, fmt_err(row.max_rel_err), fmt_bytes(row.bytes),
                      fmt_seconds(row.seconds), escape(row.source or "-"), note)
    console.print(table)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    for line in tail:
        console.print(line, markup=False, highlight=False)


def fmt_err(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def fmt_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def print_table(headers: list[str], rows: list[list[Any]], stream: TextIO | None = None) -> None:
    """A plain list (jobs, primitives): a rich table on a terminal, aligned columns otherwise."""
    stream = stream or sys.stdout
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    if stream.isatty():
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(*headers, show_edge=False)
        for row in cells:
            table.add_row(*(escape(c) for c in row))
        Console(file=stream).print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=stream)
