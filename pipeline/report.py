"""The run report: documents and bytes per source after each stage, drops by reason, charts.

Everything comes from the stage markers in WORKDIR/_state, so a report can be written at any
time, also for a partial run. Stages add their own sections through `Stage.report_section()`.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from typing import Any

from pipeline.stage import Stage, Task, TaskResult
from pipeline.workdir import Workdir

REPORT_DIR = "report"


@dataclass
class StageRow:
    stage_id: str
    type_name: str
    stats: dict[str, dict[str, Any]]
    section: str | None
    produces_documents: bool


def _collect(workdir: Workdir) -> tuple[str, list[StageRow]]:
    from pipeline.runner import build_stages, load_workdir_recipe

    recipe = load_workdir_recipe(workdir)
    rows = []
    for stage, _ in build_stages(recipe, workdir):
        marker_path = workdir.stage_marker(stage.stage_id)
        if stage.type_name == ReportStage.type_name or not workdir.exists(marker_path):
            continue
        marker = workdir.read_json(marker_path)
        rows.append(StageRow(stage.stage_id, stage.type_name, marker["stats"], stage.report_section(),
                             stage.produces_documents))
    return recipe.recipe.name, rows


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _markdown(name: str, rows: list[StageRow]) -> str:
    lines = [f"# Run report: {name}", ""]
    if not rows:
        return "\n".join(lines + ["No stage has finished yet."]) + "\n"
    lines += ["## Documents per source after each stage", "",
              "| stage | source | docs in | docs out | dropped | text bytes out |", "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        for source, stats in sorted(row.stats.items()):
            dropped = sum(stats["dropped"].values())
            size = _human_bytes(stats.get("bytes_out", 0)) if row.produces_documents else "-"
            lines.append(f"| {row.stage_id} | {source} | {stats['docs_in']:,} | {stats['docs_out']:,} | "
                         f"{dropped:,} | {size} |")
    lines += ["", "## Drops by reason", "", "| stage | source | reason | documents |", "|---|---|---|---:|"]
    for row in rows:
        for source, stats in sorted(row.stats.items()):
            for reason, count in sorted(stats["dropped"].items(), key=lambda kv: -kv[1]):
                lines.append(f"| {row.stage_id} | {source} | {reason} | {count:,} |")
    lines += ["", "![documents](documents.png)", "", "![bytes](bytes.png)", "", "![drops](drops.png)", ""]
    for row in rows:
        if row.section:
            lines += [f"## {row.stage_id} ({row.type_name})", "", row.section.strip(), ""]
    return "\n".join(lines) + "\n"


def _charts(rows: list[StageRow]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc_rows = [r for r in rows if any(s["docs_out"] or s["docs_in"] for s in r.stats.values())]
    sources = sorted({s for r in doc_rows for s in r.stats})
    charts: dict[str, bytes] = {}
    text_rows = [r for r in doc_rows if r.produces_documents]
    for name, key, label, chart_rows in (("documents.png", "docs_out", "documents", doc_rows),
                                         ("bytes.png", "bytes_out", "text bytes", text_rows)):
        fig, ax = plt.subplots(figsize=(max(6, len(chart_rows) * 1.2), 4))
        width = 0.8 / max(len(sources), 1)
        for i, source in enumerate(sources):
            values = [r.stats.get(source, {}).get(key, 0) for r in chart_rows]
            ax.bar([x + i * width for x in range(len(chart_rows))], values, width, label=source)
        ax.set_xticks([x + width * (len(sources) - 1) / 2 for x in range(len(chart_rows))],
                      [r.stage_id for r in chart_rows], rotation=30, ha="right")
        ax.set_ylabel(f"{label} out")
        ax.set_title(f"{label} per source after each stage")
        ax.legend()
        charts[name] = _png(fig)
    drops: dict[str, int] = {}
    for row in rows:
        for stats in row.stats.values():
            for reason, count in stats["dropped"].items():
                drops[f"{row.stage_id}: {reason}"] = drops.get(f"{row.stage_id}: {reason}", 0) + count
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(drops) + 1)))
    ordered = sorted(drops.items(), key=lambda kv: kv[1])
    ax.barh([k for k, _ in ordered], [v for _, v in ordered])
    ax.set_xlabel("documents dropped")
    ax.set_title("drops by stage and reason")
    charts["drops.png"] = _png(fig)
    plt.close("all")
    return charts


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _html(markdown: str) -> str:
    """A dependency-free rendering of our own Markdown subset (headings, tables, images, text)."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>zyda report</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 8px}td:nth-child(n+3){text-align:right}</style></head><body>"]
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-:"):
                continue
            tag = "th" if not in_table else "td"
            out.append(("<table>" if not in_table else "") + "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            in_table = True
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("![") and "](" in line:
            alt, src = line[2:].split("](", 1)
            out.append(f"<img alt='{html.escape(alt)}' src='{html.escape(src.rstrip(')'))}'>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out + ["</body></html>"]) + "\n"


def write_report(workdir: Workdir) -> list[str]:
    """Write report.md, report.html and the PNG charts under WORKDIR/report; returns their paths."""
    name, rows = _collect(workdir)
    markdown = _markdown(name, rows)
    files = {"report.md": markdown.encode(), "report.html": _html(markdown).encode()}
    if rows:
        files.update(_charts(rows))
    paths = []
    for file_name, data in files.items():
        path = workdir.path(REPORT_DIR, file_name)
        workdir.write_bytes_atomic(path, data)
        paths.append(path)
    return paths


class ReportStage(Stage):
    """Writes the run report as the recipe's last step."""

    type_name = "report"
    produces_documents = False

    def plan(self) -> list[Task]:
        return [Task(task_id="report")]

    def output_folders(self, task: Task) -> list[str]:
        return []

    def run_task(self, task: Task) -> TaskResult:
        return TaskResult(outputs=[self.workdir.relative(p) for p in write_report(self.workdir)])
