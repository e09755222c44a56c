"""The CLI's rendering: rich tables and a progress bar on a terminal, plain lines elsewhere,
from the same rows; text from reports (error messages with `[stage]`) is never read as markup."""

from __future__ import annotations

import io
import re

from jaxport.console import Progress, print_table, summarize

REPORT = {
    "targets": {
        "savedmodel": {"status": "ok", "path": "savedmodel", "bytes": 123456, "seconds": 1.2,
                       "verify_seconds": 0.3, "parity": {"max_rel_err": 1.2e-7}},
        "tflite": {"status": "ok", "path": "model.tflite", "bytes": 2345, "seconds": 2.0,
                   "verify_seconds": 0.1, "source": "orbax",
                   "source_reason": "lowered graph: primitive fft has no lowering",
                   "parity": {"max_rel_err": 3e-6}},
        "tfjs": {"status": "failed", "error": {"stage": "tfjs", "message": "primitive [fft] failed",
                                               "hint": "see docs/lowering.md"}},
    },
    "warnings": ["output [y] is constant"],
}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    assert summarize(REPORT, "out/report.json", out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["savedmodel", "ok", "max", "err", "÷", "scale", "1.2e-07",
                                "120.6", "kB", "1.5s", "-", "savedmodel"]
    assert lines[1].startswith("tflite      ok      max err ÷ scale 3e-06")
    assert lines[1].endswith("orbax    model.tflite (orbax path: lowered graph: primitive fft has no lowering)")
    assert lines[2:] == ["tfjs        FAILED  [tfjs] primitive [fft] failed",
                         f"{'':<20}hint: see docs/lowering.md",
                         "warning: output [y] is constant", "report: out/report.json"]


def test_a_target_verified_in_two_runtimes_says_so() -> None:
    runtimes = {"litert": {"status": "ok"}, "litertjs": {"status": "ok"}}
    tflite = {**REPORT["targets"]["tflite"], "source_reason": None, "runtimes": runtimes}
    out = io.StringIO()
    summarize({"targets": {"tflite": tflite}}, "report.json", out)
    assert out.getvalue().splitlines()[0].endswith("model.tflite (verified in LiteRT and LiteRT.js)")
    runtimes["litertjs"] = {"status": "unavailable"}  # then the warning tells
    out = io.StringIO()
    summarize({"targets": {"tflite": tflite}}, "report.json", out)
    assert out.getvalue().splitlines()[0].endswith("orbax    model.tflite")


def _visible(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)


def test_rich_table_on_a_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = Terminal()
    assert summarize(REPORT, "out/report.json", out) == 1
    text = _visible(out.getvalue())
    assert "┃ max err ÷ scale ┃" in text and "│ 120.6 kB │" in text
    assert "[tfjs] primitive [fft] failed" in text and "output [y] is constant" in text


def test_progress_bar_on_a_terminal_lines_elsewhere() -> None:
    tty, plain = Terminal(), io.StringIO()
    for stream in (tty, plain):
        progress = Progress(stream)
        for i, stage in enumerate(("load", "[x]", "done")):
            progress(stage, i / 2, f"step {stage} [ok]")
    shown = _visible(tty.getvalue())  # rich redraws on a timer: the last state is always drawn
    assert "━━━━ 100%" in shown and "step done [ok]" in shown
    assert [line.split("] ", 1)[1] for line in plain.getvalue().splitlines()] == [
        "load: step load [ok]", "[x]: step [x] [ok]", "done: step done [ok]"]


def test_print_table_aligns_columns() -> None:
    out = io.StringIO()
    print_table(["id", "status"], [["j_1", "succeeded"], ["j_22", None]], out)
    assert out.getvalue().splitlines() == ["id    status", "j_1   succeeded", "j_22  -"]
