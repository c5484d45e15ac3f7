"""One self-contained HTML page for check, simulate and inspect: what each connection did, in time.

Per subject (check), per worker process (simulate) or per live process (inspect): a timeline of
checkouts (threads as lanes, each checkout a bar from checkout to return; a lost one ends in a ✕
where its thread ended), the pool's occupancy per task as a step chart, the leak sites with the
project's source around them, the findings and the fix.

The page is for CI artifacts and mail attachments: inline CSS, inline SVG, no script, no font or
stylesheet from anywhere else, so it reads the same offline, in a sandboxed artifact viewer that
blocks scripts, and on paper (``@media print``). Hover text is SVG ``<title>``, which needs no
script either. Every string from the report (paths, code, task names) is escaped. Nothing is
computed here: verdicts, summaries and findings come with the report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape

from pooldoctor.core.model import (
    ConnectionSpan,
    Finding,
    Fix,
    FleetResult,
    InspectReport,
    LeakSite,
    NodeResult,
    ProcessResult,
    Report,
    SimulateReport,
    SpanEnd,
    SubjectResult,
    TaskCensus,
    TaskSpan,
    Timeline,
    Verdict,
)
from pooldoctor.reporters import console
from pooldoctor.reporters import inspect as inspect_text
from pooldoctor.reporters import simulate as simulate_text
from pooldoctor.reporters.sites import location, stack_line

# Exact colours, each used by one thing only, so a screenshot can be read by colour (the browser
# test counts the lost bars by their red and finds each label by its pill).
LOST_COLOR = "#d62728"
RETURNED_COLOR = "#2ca02c"
HELD_COLOR = "#f2a900"
OPEN_COLOR = "#9e9e9e"
LOST_LABEL_COLOR = "#ffd23f"
INHERITED_COLOR = "#7b3fa0"

# The timeline's geometry, in SVG user units (the SVG scales to the page's width).
WIDTH = 1160
PLOT_X0 = 270
PLOT_X1 = WIDTH - 20
AXIS_H = 24
HEADER_H = 24
TASK_H = 18
LANE_H = 30
LABEL_ROW_H = 16
BAR_H = 12
# Bounds that keep a long run's page usable: lanes and bars past these are counted, not drawn.
MAX_LANES = 40
MAX_SPANS = 2000
MAX_TASK_LINES = 200

CSS = f"""
:root {{ color-scheme: light; }}
body {{ font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d1d1f; background: #fff;
  max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }}
h1 {{ font-size: 22px; margin: 8px 0; }} h2 {{ font-size: 18px; margin: 0 0 6px; }}
h3 {{ font-size: 15px; margin: 14px 0 6px; }}
code, pre {{ font: 12px/1.4 "DejaVu Sans Mono", ui-monospace, monospace; }}
pre {{ background: #f6f8fa; padding: 8px 10px; overflow-x: auto; border-radius: 4px; }}
section.subject, section.node {{ border-top: 2px solid #d0d7de; padding-top: 12px;
  margin-top: 24px; }}
.badge {{ display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; text-transform: uppercase; background: #eaeef2; color: #333; }}
.badge.clean {{ background: #dcfce7; color: #166534; }}
.badge.leak, .badge.unsafe, .badge.lost {{ background: #fde8e8; color: #9b1c1c; }}
.badge.pinned {{ background: #fff4d6; color: #7a4d00; }}
.badge.error {{ background: #efe2fb; color: #5b2286; }}
.badge.proven {{ background: #dcfce7; color: #166534; }}
.badge.unproven {{ background: #eaeef2; color: #444; }}
.muted {{ color: #57606a; }} .note {{ color: #57606a; font-style: italic; }}
table.numbers {{ border-collapse: collapse; margin: 6px 0; }}
table.numbers th, table.numbers td {{ border-bottom: 1px solid #d0d7de; padding: 3px 10px;
  text-align: left; }}
table.numbers td.n {{ text-align: right; }}
ul.legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 14px; }}
ul.legend svg {{ vertical-align: middle; }}
svg.chart {{ width: 100%; height: auto; display: block; margin: 6px 0 10px; }}
svg text {{ font-family: "DejaVu Sans", sans-serif; font-size: 11px; fill: #1d1d1f; }}
svg .small {{ font-size: 9px; fill: #57606a; }}
svg .axis line, svg .grid {{ stroke: #d8dee4; stroke-width: 1; }}
svg .lane-bg {{ fill: #f6f8fa; }}
.span.returned {{ fill: {RETURNED_COLOR}; }} .span.lost {{ fill: {LOST_COLOR}; }}
.span.held {{ fill: url(#hatch-held); }} .span.open {{ fill: {OPEN_COLOR}; }}
.span.inherited {{ stroke: {INHERITED_COLOR}; stroke-width: 2; stroke-dasharray: 3 2; }}
.lost-mark circle {{ fill: #fff; stroke: #2b0000; stroke-width: 2; }}
.lost-mark path {{ stroke: #2b0000; stroke-width: 2; fill: none; }}
.lost-open {{ fill: #2b0000; }}
.lost-label rect {{ fill: {LOST_LABEL_COLOR}; }} .lost-label text {{ fill: #5a0000;
  font-size: 10px; }}
.inherited-tag text {{ fill: {INHERITED_COLOR}; font-size: 10px; font-weight: 600; }}
.task.ok {{ fill: #e3f4e5; }} .task.failed {{ fill: #fbd5d5; }} .task.unknown {{ fill: #eaeef2; }}
.task-boundary {{ stroke: #8c959f; stroke-width: 1; stroke-dasharray: 2 3; }}
.process-header rect {{ fill: #eaeef2; }} .crossed rect {{ fill: #9b1c1c; }}
.crossed text {{ fill: #fff; font-weight: 600; }}
.series {{ fill: none; stroke-width: 2; }}
.series.size {{ fill: #9cc3e6; fill-opacity: 0.35; stroke: #1f77b4; stroke-width: 1; }}
.series.checked-out {{ stroke: #ff7f0e; stroke-width: 6; }}
.series.available {{ stroke: #17becf; }} .series.lost {{ stroke: #8c1c13; }}
.max-size {{ stroke: #57606a; stroke-dasharray: 6 4; }}
.step {{ fill: transparent; }} .step.exhausted, .exhausted-swatch {{ fill: #fbd5d5; }}
.exhausted-label {{ fill: #9b1c1c; font-weight: 600; }}
.exhausted-edge {{ stroke: #9b1c1c; stroke-width: 4; }}
pre.excerpt {{ padding: 6px 0; }} pre.excerpt .line {{ display: block; padding: 0 10px; }}
pre.excerpt .line.site {{ background: #fff0b3; font-weight: 700; }}
pre.excerpt .ln {{ display: inline-block; min-width: 4em; color: #8c959f; }}
pre.diff .add {{ color: #116329; }} pre.diff .del {{ color: #9b1c1c; }}
pre.diff .hunk {{ color: #0550ae; }}
@media print {{
  body {{ max-width: none; padding: 0; font-size: 11px; }}
  * {{ -webkit-print-color-adjust: exact; print-color-adjust: exact; }}
  section.subject, section.node, .leak-site, svg.chart {{ break-inside: avoid; }}
  pre {{ white-space: pre-wrap; overflow: visible; }}
  a {{ color: inherit; text-decoration: none; }}
}}
"""

# One <defs> for the whole page: inline SVGs of one document share it by id.
DEFS = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
    '<pattern id="hatch-held" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)">'
    f'<rect width="6" height="6" fill="{HELD_COLOR}"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#a66f00" stroke-width="2"/></pattern>'
    "</defs></svg>"
)


def render(report: Report | SimulateReport | InspectReport) -> str:
    """The report as one HTML5 document."""
    if isinstance(report, SimulateReport):
        title, (meta, body) = "pooldoctor simulate", _simulate_body(report)
    elif isinstance(report, InspectReport):
        title, (meta, body) = "pooldoctor inspect", _inspect_body(report)
    else:
        title, (meta, body) = "pooldoctor check", _check_body(report)
    head_title = f"{title}: {report.verdict.value}"
    # The legend explains the timelines' bars: a page without any does without it.
    legend = LEGEND if 'class="chart timeline"' in body else ""
    footer = [console.environment_line(report.environment), f"{report.seconds:.1f} s"]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(head_title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{DEFS}\n<header>\n<h1>{_e(title)} {_badge(report.verdict)}</h1>\n"
        f'<p class="headline"><strong>{_e(report.headline)}</strong></p>\n'
        f"{meta}\n</header>\n{legend}\n<main>\n{body}\n</main>\n"
        f"{_findings(report.findings, heading='Findings')}\n"
        f"{_closing_fix(getattr(report, 'fix', None))}\n"
        f'<footer class="muted">{_e(" · ".join(p for p in footer if p))}</footer>\n'
        "</body>\n</html>\n"
    )


# -- the three reports ------------------------------------------------------------------------


def _check_body(report: Report) -> tuple[str, str]:
    """What the header adds for check, and the body: a table, then a section per subject."""
    db = report.database
    meta = (
        f'<p class="muted">{_e(db.dsn)} (alias {_e(db.alias)}, '
        f"{_e(console.pool_description(db))}, CONN_MAX_AGE={_e(str(db.conn_max_age))})</p>"
    )
    parts = [_check_table(report.results)]
    for i, result in enumerate(report.results):
        parts.append(_subject_section(i, result, report.fix))
    return meta, "\n".join(parts)


def _check_table(results: Sequence[SubjectResult]) -> str:
    head = ("Subject", "Kind", "Verdict", "Tasks", "Failed", "Lost", "Held", "Exhausted after")
    rows = []
    for i, r in enumerate(results):
        until = "—" if r.tasks_until_exhaustion is None else str(r.tasks_until_exhaustion)
        numbers = (r.tasks, r.failed_tasks, r.lost_slots, r.held_connections)
        cells = "".join(f'<td class="n">{n}</td>' for n in numbers)
        rows.append(
            f'<tr><td><a href="#subject-{i}">{_e(r.subject)}</a></td><td>{_e(r.kind)}</td>'
            f'<td>{_badge(r.verdict)}</td>{cells}<td class="n">{until}</td></tr>'
        )
    return _table(head, rows)


def _subject_section(i: int, r: SubjectResult, closing: Fix | None) -> str:
    parts = [
        f'<section class="subject" id="subject-{i}" data-subject="{_e(r.subject)}">',
        f'<h2>{_e(r.subject)} <span class="muted">({_e(r.kind)})</span> {_badge(r.verdict)}</h2>',
        f'<p class="summary">{_e(r.summary)}</p>',
    ]
    if r.description:
        parts.append(f'<p class="muted">{_literals(r.description)}</p>')
    if r.stop_detail:
        parts.append(f"<p>Stopped ({_e(r.stop.value)}): {_e(r.stop_detail)}</p>")
    if r.timeline is not None:
        rows = [_Row(None, r.timeline, 0.0)]
        parts += ["<h3>Connections in time</h3>", _timeline_svg(f"timeline-{i}", rows)]
    elif r.verdict is not Verdict.SKIPPED:
        parts.append('<p class="note">No timeline was recorded for this subject.</p>')
    parts.append(_occupancy_block(f"occupancy-{i}", r.census))
    if r.symptoms:
        items = "".join(f"<li>{_e(s)}</li>" for s in r.symptoms)
        parts.append(f'<h3>Symptoms</h3><ul class="symptoms">{items}</ul>')
    parts.append(_leak_sites(r.leak_sites))
    if r.fix is not None:
        parts.append(_subject_fix(r.fix, closing))
        if r.fix.timeline is not None:
            # The same run, patched: what "proven" looks like in time.
            rows = [_Row(None, r.fix.timeline, 0.0)]
            parts += [
                "<h3>Connections in time, with the fix</h3>",
                _timeline_svg(f"fix-timeline-{i}", rows),
            ]
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _simulate_body(report: SimulateReport) -> tuple[str, str]:
    db = report.database
    if report.server is not None:
        ran = simulate_text.server_line(report.server)
    elif report.runner is not None:
        ran = simulate_text.runner_line(report.runner)
    elif report.celery:
        c = report.celery
        ran = (
            f"Celery {c.get('version')}, --pool {c.get('pool')} -c {c.get('concurrency')}, "
            f"broker {c.get('broker')}"
        )
    else:
        ran = ""
    meta = (
        f'<p class="muted">{_e(db.dsn)} (alias {_e(db.alias)}){" · " if ran else ""}{_e(ran)}</p>'
    )
    unit = "requests" if report.server is not None else "tasks"
    parts = [_fleet_section(i, fleet, unit) for i, fleet in enumerate(report.results)]
    return meta, "\n".join(parts)


def _fleet_section(i: int, fleet: FleetResult, unit: str) -> str:
    parts = [
        f'<section class="subject fleet" id="subject-{i}" data-subject="{_e(fleet.subject)}">',
        f'<h2>{_e(fleet.subject)} <span class="muted">({_e(fleet.kind)})</span> '
        f"{_badge(fleet.verdict)}</h2>",
        f'<p class="summary">{_e(fleet.summary)}</p>',
        f"<p>{fleet.tasks} {unit} sent, {fleet.failed_tasks} failed, {fleet.tasks_lost} lost, "
        f"{fleet.crossed_replies} crossed replies.</p>",
    ]
    for backend, pids in sorted(fleet.shared_backends.items()):
        if len(pids) > 1:
            who = ", ".join(map(str, pids))
            parts.append(f'<p class="shared">Backend {backend} answered worker pids {who}.</p>')
    if fleet.stop_detail:
        parts.append(f"<p>Stopped: {_e(fleet.stop_detail)}</p>")
    parts.append(_process_table(fleet.workers, unit))
    parts.append(_processes_timeline(f"timeline-{i}", fleet.workers))
    for w in fleet.workers:
        parts.append(_process_details(f"{i}-{w.pid}", w))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _inspect_body(report: InspectReport) -> tuple[str, str]:
    meta = "".join(f'<p class="muted">{_e(line)}</p>' for line in inspect_text.header_lines(report))
    parts = [_node_section(i, node) for i, node in enumerate(report.nodes)]
    server = "".join(f"<li>{_e(line)}</li>" for line in inspect_text.server_lines(report))
    parts.append(f'<section class="server"><h2>Server</h2><ul>{server}</ul></section>')
    return meta, "\n".join(parts)


def _node_section(i: int, node: NodeResult) -> str:
    parts = [
        f'<section class="node" id="node-{i}" data-node="{_e(node.node)}">',
        f"<h2>{_e(node.node)} {_badge(node.verdict)}</h2>",
        f'<p class="summary">{_e(node.summary)}</p>',
    ]
    if node.processes:
        parts.append(f'<p class="muted">{_e(inspect_text.node_lines(node)[0])}</p>')
        parts.append(_process_table(node.processes, "tasks"))
        parts.append(_processes_timeline(f"timeline-{i}", node.processes))
        for p in node.processes:
            parts.append(_process_details(f"{i}-{p.pid}", p))
    else:
        parts.append(f"<p>{_e(node.status.value)}</p>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _process_table(processes: Sequence[ProcessResult], unit: str) -> str:
    head = ("Process", "Verdict", unit.capitalize(), "Failed", "Crossed", "Inherited in use",
            "Opened", "Lost", "Held")  # fmt: skip
    rows = []
    for p in processes:
        numbers = (p.tasks, p.failed_tasks, p.crossed_replies, p.inherited_connections,
                   p.connections_opened, p.lost_slots, p.held_connections)  # fmt: skip
        cells = "".join(f'<td class="n">{n}</td>' for n in numbers)
        main = " (main)" if p.main else ""
        rows.append(
            f'<tr class="process" data-pid="{p.pid}"><td>pid {p.pid}{main}</td>'
            f"<td>{_badge(p.verdict)}</td>{cells}</tr>"
        )
    return _table(head, rows)


def _processes_timeline(svg_id: str, processes: Sequence[ProcessResult]) -> str:
    """The processes' timelines on one wall clock, one row of lanes per process."""
    timed = [(p, p.timeline) for p in processes if p.timeline is not None]
    if not timed:
        return '<p class="note">No timeline was recorded for these processes.</p>'
    start = min(t.origin for _, t in timed)
    rows = [_Row(_process_heading(p), t, t.origin - start, p.crossed_replies) for p, t in timed]
    return "<h3>Connections in time</h3>\n" + _timeline_svg(svg_id, rows)


def _process_heading(p: ProcessResult) -> str:
    inherited = f", {p.inherited_connections} inherited in use" if p.inherited_connections else ""
    return f"pid {p.pid}{' (main)' if p.main else ''}: {p.verdict.value}{inherited}"


def _process_details(key: str, p: ProcessResult) -> str:
    parts = [
        f'<div class="process-details" id="process-{_e(key)}" data-pid="{p.pid}">',
        f"<h3>pid {p.pid} {_badge(p.verdict)}</h3>",
        f'<p class="summary">{_e(p.summary)}</p>',
    ]
    if p.pinned:
        items = "".join(
            f"<li>held by {_e(c.thread)} ({_e(c.thread_role)}) for {c.held_seconds:g} s, "
            f"{_e(c.transaction)}</li>"
            for c in p.pinned
        )
        parts.append(f'<ul class="pinned">{items}</ul>')
    parts.append(_occupancy_block(f"occupancy-{key}", p.census))
    parts.append(_leak_sites(p.leak_sites))
    parts.append("</div>")
    return "\n".join(x for x in parts if x)


# -- the timeline -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Row:
    """One process's lanes in a timeline: its heading (None for check's one process), its
    timeline and where its second 0 sits on the shared axis."""

    heading: str | None
    timeline: Timeline
    offset: float
    crossed: int = 0


@dataclasses.dataclass(frozen=True)
class _Lane:
    thread: str
    role: str
    spans: tuple[ConnectionSpan, ...]

    @property
    def labelled(self) -> bool:
        """A lost or inherited bar gets a label under it: its lane is taller."""
        return any(s.end is SpanEnd.LOST or s.inherited for s in self.spans)


@dataclasses.dataclass(frozen=True)
class _Scale:
    """Seconds on the shared clock to x. The axis starts at the first checkout or task: a
    subject's set-up before them would only be blank space."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if self.end <= self.start:  # nothing took any time: still a drawable axis
            object.__setattr__(self, "end", self.start + 1e-3)

    def x(self, t: float) -> float:
        share = (t - self.start) / (self.end - self.start)
        return PLOT_X0 + (PLOT_X1 - PLOT_X0) * min(max(share, 0.0), 1.0)


def _timeline_svg(svg_id: str, rows: Sequence[_Row]) -> str:
    start = min(r.offset + _row_start(r.timeline) for r in rows)
    scale = _Scale(start, max(r.offset + _row_duration(r.timeline) for r in rows))
    body: list[str] = []
    notes: list[str] = []
    y = AXIS_H
    for n, row in enumerate(rows):
        lanes, note = _lanes(row.timeline)
        if note:
            notes.append(f"{row.heading}: {note}" if row.heading else note)
        group, height = _row_svg(n, row, lanes, scale, y)
        body.append(group)
        y += height + 6
    height = y + 4
    svg = (
        f'<svg class="chart timeline" id="{svg_id}" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="connections in time, checkout to return, per thread">'
        f"{_axis(scale, height)}{''.join(body)}</svg>"
    )
    return svg + "".join(f'\n<p class="note">{_e(note)}</p>' for note in notes)


def _row_start(timeline: Timeline) -> float:
    firsts = [s.checked_out for s in timeline.spans] + [t.started for t in timeline.tasks]
    return max(min(firsts, default=0.0), 0.0)


def _row_duration(timeline: Timeline) -> float:
    ends = [timeline.duration]
    ends += [s.ended for s in timeline.spans if s.ended is not None]
    ends += [t.ended for t in timeline.tasks if t.ended is not None]
    return max(ends)


def _lanes(timeline: Timeline) -> tuple[list[_Lane], str]:
    """Lanes by thread, in order of first checkout, bounded: what is left out is said."""
    spans = list(timeline.spans)
    notes = []
    if timeline.dropped_spans:
        notes.append(f"{timeline.dropped_spans} older checkouts were not recorded")
    if len(spans) > MAX_SPANS:
        # Every unreturned checkout stays; the latest returned ones fill the rest.
        keep = [s for s in spans if s.end is not SpanEnd.RETURNED]
        returned = [s for s in spans if s.end is SpanEnd.RETURNED]
        room = max(MAX_SPANS - len(keep), 0)
        kept_returned = returned[len(returned) - room :] if room else []
        notes.append(f"{len(returned) - len(kept_returned)} returned checkouts not drawn")
        spans = sorted(keep + kept_returned, key=lambda s: s.checked_out)
    by_thread: dict[str, list[ConnectionSpan]] = {}
    for s in sorted(spans, key=lambda s: s.checked_out):
        by_thread.setdefault(s.thread, []).append(s)
    lanes = [_Lane(t, ss[0].thread_role, tuple(ss)) for t, ss in by_thread.items()]
    if len(lanes) > MAX_LANES:
        # Threads with a lost, held or open connection first: they are what the page is for.
        ranked = sorted(lanes, key=lambda ln: all(s.end is SpanEnd.RETURNED for s in ln.spans))
        shown = {id(ln) for ln in ranked[:MAX_LANES]}
        hidden = [ln for ln in lanes if id(ln) not in shown]
        lanes = [ln for ln in lanes if id(ln) in shown]
        checkouts = sum(len(ln.spans) for ln in hidden)
        notes.append(f"{len(hidden)} more threads ({checkouts} checkouts) not drawn")
    return lanes, "; ".join(notes) + ("." if notes else "")


def _axis(scale: _Scale, height: int) -> str:
    step = _nice_step((scale.end - scale.start) / 8)
    parts = ['<g class="axis">']
    first = math.ceil(scale.start / step - 1e-9)
    for k in range(first, math.floor(scale.end / step + 1e-9) + 1):
        t = k * step
        x = scale.x(t)
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{AXIS_H - 6}" x2="{x:.1f}" y2="{height - 4}"/>'
            f'<text class="small" x="{x:.1f}" y="{AXIS_H - 9}" text-anchor="middle">'
            f"{_tick(t, step, scale.end >= 1)}</text>"
        )
    parts.append(f'<text class="small" x="8" y="{AXIS_H - 9}">time since start</text></g>')
    return "".join(parts)


def _row_svg(n: int, row: _Row, lanes: Sequence[_Lane], scale: _Scale, top: int) -> tuple[str, int]:
    """One process's heading, task strip and lanes; returns the group and its height."""
    parts = [f'<g class="process-row" data-row="{n}">']
    y = top
    if row.heading is not None:
        parts.append(_process_header(row, y))
        y += HEADER_H
    lanes_top = y + TASK_H
    lanes_height = sum(LANE_H + (LABEL_ROW_H if ln.labelled else 0) for ln in lanes)
    parts.append(_task_strip(row, scale, y, lanes_top + lanes_height))
    y = lanes_top
    for lane in lanes:
        lane_svg, lane_height = _lane_svg(lane, row, scale, y)
        parts.append(lane_svg)
        y += lane_height
    if not lanes:
        parts.append(f'<text class="note" x="{PLOT_X0}" y="{y + 14}">no checkouts</text>')
        y += LANE_H
    parts.append("</g>")
    return "".join(parts), y - top


def _process_header(row: _Row, y: int) -> str:
    heading = row.heading or ""
    parts = [
        f'<g class="process-header"><rect x="0" y="{y + 2}" width="{WIDTH}" '
        f'height="{HEADER_H - 4}"/><text x="8" y="{y + 16}" font-weight="600">'
        f"{_e(heading)}</text></g>"
    ]
    if row.crossed:
        label = f"{row.crossed} crossed repl{'y' if row.crossed == 1 else 'ies'}"
        w = _text_width(label, 11) + 14
        x = WIDTH - w - 8
        parts.append(
            f'<g class="crossed" data-count="{row.crossed}"><title>{_e(label)}: tasks got '
            f'another task\'s query result</title><rect x="{x:.1f}" y="{y + 3}" '
            f'width="{w:.1f}" height="{HEADER_H - 6}" rx="8"/><text x="{x + 7:.1f}" '
            f'y="{y + 16}">{_e(label)}</text></g>'
        )
    return "".join(parts)


def _task_strip(row: _Row, scale: _Scale, y: int, bottom: int) -> str:
    tasks = row.timeline.tasks
    parts = ['<g class="tasks">']
    parts.append(f'<text class="small" x="8" y="{y + 13}">tasks</text>')
    lines = len(tasks) <= MAX_TASK_LINES
    for task in tasks:
        x0 = scale.x(row.offset + task.started)
        end = task.ended if task.ended is not None else row.timeline.duration
        x1 = max(scale.x(row.offset + end), x0 + 1)
        outcome = _task_outcome(task)
        parts.append(
            f'<rect class="task {outcome}" data-task="{_e(task.label)}" x="{x0:.1f}" '
            f'y="{y + 2}" width="{x1 - x0:.1f}" height="{TASK_H - 4}" '
            f'shape-rendering="crispEdges"><title>{_e(task.label)}: {outcome}</title></rect>'
        )
        label = task.label if outcome != "failed" else f"{task.label} ✗"
        if _text_width(label, 9) + 4 < x1 - x0:
            parts.append(f'<text class="small" x="{x0 + 3:.1f}" y="{y + 12}">{_e(label)}</text>')
        if lines:
            parts.append(
                f'<line class="task-boundary" x1="{x0:.1f}" y1="{y + TASK_H}" x2="{x0:.1f}" '
                f'y2="{bottom}"/>'
            )
    parts.append("</g>")
    return "".join(parts)


def _task_outcome(task: TaskSpan) -> str:
    if task.ok is None:
        return "unknown"
    return "ok" if task.ok else "failed"


def _lane_svg(lane: _Lane, row: _Row, scale: _Scale, y: int) -> tuple[str, int]:
    height = LANE_H + (LABEL_ROW_H if lane.labelled else 0)
    name = _shorten(lane.thread, 38)
    role = _shorten(lane.role, 44)
    parts = [
        f'<g class="lane" data-thread="{_e(lane.thread)}" data-role="{_e(lane.role)}">',
        f'<rect class="lane-bg" x="{PLOT_X0}" y="{y + 1}" width="{PLOT_X1 - PLOT_X0}" '
        f'height="{height - 2}"/>',
        f'<text x="8" y="{y + 13}" font-weight="600">{_e(name)}<title>{_e(lane.thread)}'
        f"</title></text>",
        f'<text class="small" x="8" y="{y + 25}">{_e(role)}</text>',
    ]
    bar_y = y + (LANE_H - BAR_H) // 2
    tasks = {t.label: t for t in row.timeline.tasks}
    labelled: list[float] = []  # right edges of the lane's lost labels drawn so far
    parts.extend(_span_svg(s, row, scale, bar_y, tasks, labelled) for s in lane.spans)
    parts.append("</g>")
    return "".join(parts), height


def _span_svg(
    s: ConnectionSpan,
    row: _Row,
    scale: _Scale,
    bar_y: int,
    tasks: Mapping[str, TaskSpan],
    labelled: list[float],
) -> str:
    x0 = scale.x(row.offset + s.checked_out)
    end = s.ended if s.ended is not None else row.timeline.duration
    x1 = max(scale.x(row.offset + end), x0 + 1)
    classes = f"span {s.end.value}" + (" inherited" if s.inherited else "")
    if s.end is SpanEnd.LOST and s.ended is None:
        classes += " open-ended"
    hover = _span_hover(s)
    parts = [
        f'<g class="checkout" data-connection="{s.connection}" data-thread="{_e(s.thread)}" '
        f'data-end="{s.end.value}">',
        f'<rect class="{classes}" x="{x0:.1f}" y="{bar_y}" width="{x1 - x0:.1f}" '
        f'height="{BAR_H}" shape-rendering="crispEdges" data-connection="{s.connection}" '
        f'data-thread="{_e(s.thread)}"><title>{_e(hover)}</title></rect>',
    ]
    if s.end is SpanEnd.LOST:
        parts.append(_lost_end(s, (x0, x1), bar_y, tasks, labelled))
    if s.inherited:
        tag = "inherited"
        parts.append(
            f'<g class="inherited-tag"><text x="{max(x0, PLOT_X0):.1f}" '
            f'y="{bar_y + BAR_H + 12}">{tag}<title>checked out in the parent process before '
            f"the fork</title></text></g>"
        )
    parts.append("</g>")
    return "".join(parts)


def _span_hover(s: ConnectionSpan) -> str:
    task = f" by {s.task}" if s.task else ""
    start = _duration(s.checked_out)
    if s.ended is None:
        end = f"still out at the end ({s.end.value})"
    else:
        end = f"{s.end.value} at {_duration(s.ended)}"
    inherited = ", inherited from the parent process" if s.inherited else ""
    return f"connection #{s.connection} on {s.thread}{task}: out at {start}, {end}{inherited}"


def _lost_end(
    s: ConnectionSpan,
    bar: tuple[float, float],
    bar_y: int,
    tasks: Mapping[str, TaskSpan],
    labelled: list[float],
) -> str:
    """The ✕ where a lost connection's thread ended (an arrow when the moment is unknown), and
    its label in a pill under the bar's end, unless the lane's previous label is in the way
    (the bar's hover text still says it all)."""
    x0, x = bar
    mid = bar_y + BAR_H / 2
    if s.ended is None:
        mark = (
            f'<path class="lost-open" d="M{x:.1f},{bar_y - 2} l7,{BAR_H / 2 + 2} '
            f'l-7,{BAR_H / 2 + 2} z"/>'
        )
    else:
        # On a bar too short to hold it, the ring sits just past the end, not over the red.
        cx = x if x - x0 >= 2 * BAR_H else x + BAR_H / 2 + 1
        mark = f'<g class="lost-mark" data-x="{x:.1f}">{_cross(cx, mid)}</g>'
    text = _lost_text(s, tasks)
    w = _text_width(text, 10) + 10
    lx = min(max(PLOT_X0, x + 6 - w), PLOT_X1 - w)
    if labelled and lx < labelled[-1] + 4:
        return mark
    labelled.append(lx + w)
    ly = bar_y + BAR_H + 3
    label = (
        f'<g class="lost-label"><rect x="{lx:.1f}" y="{ly}" width="{w:.1f}" height="13" rx="6" '
        f'shape-rendering="crispEdges"/><text x="{lx + 5:.1f}" y="{ly + 10}">{_e(text)}</text></g>'
    )
    return mark + label


def _cross(x: float, y: float) -> str:
    """A ✕ in a ring centred on (x, y): it covers the bar's very end, so the bar stays one
    piece of red and the mark reads as its end."""
    r, c = BAR_H / 2 + 1, BAR_H / 4
    return (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"/><path d="M{x - c:.1f},{y - c:.1f} '
        f'L{x + c:.1f},{y + c:.1f} M{x - c:.1f},{y + c:.1f} L{x + c:.1f},{y - c:.1f}"/>'
    )


def _lost_text(s: ConnectionSpan, tasks: Mapping[str, TaskSpan]) -> str:
    if s.ended is None:
        return "lost — moment unknown"
    if s.thread_ended is None:
        return "lost — connection dropped"
    task = tasks.get(s.task) if s.task is not None else None
    if task is None or task.ended is None:
        return "lost — thread ended"
    if s.thread_ended <= task.ended:
        return f"lost — thread ended within {task.label}"
    after = _duration(s.thread_ended - task.ended)
    return f"lost — thread ended {after} after {task.label}"


# -- pool occupancy -------------------------------------------------------------------------------

OCC_X0 = 120
OCC_H = 150
OCC_TOP = 34
# Drawn in this order: the wide checked-out line under the narrower ones it often equals.
SERIES = (
    ("size", "size"),
    ("checked-out", "checked out"),
    ("available", "available"),
    ("lost", "lost"),
)


def _occupancy_block(svg_id: str, census: Sequence[TaskCensus]) -> str:
    pooled = [c for c in census if c.pool is not None]
    if not census:
        return ""
    if not pooled:
        return '<p class="note">No pool: the pool\'s occupancy was not measured.</p>'
    return "<h3>Pool occupancy after each task</h3>\n" + _occupancy_svg(svg_id, census)


def _occupancy_values(c: TaskCensus) -> dict[str, int] | None:
    if c.pool is None:
        return None
    return {
        "size": c.pool.size,
        "available": c.pool.available,
        "checked-out": c.pool.checked_out,
        "lost": c.lost,
    }


@dataclasses.dataclass(frozen=True)
class _Levels:
    """The occupancy chart's vertical scale: connections, 0 to ``top``."""

    top: int
    bottom: float = OCC_TOP + OCC_H

    def y(self, v: float) -> float:
        return self.bottom - OCC_H * v / self.top


def _occupancy_svg(svg_id: str, census: Sequence[TaskCensus]) -> str:
    values = [_occupancy_values(c) for c in census]
    sizes = [c.pool.max_size for c in census if c.pool is not None]
    levels = _Levels(max([*sizes, *(max(v.values()) for v in values if v is not None), 1]))
    step_w = (PLOT_X1 - OCC_X0) / len(census)
    height = levels.bottom + 40
    return "".join(
        [
            f'<svg class="chart occupancy" id="{svg_id}" viewBox="0 0 {WIDTH} {height:.0f}" '
            f'width="{WIDTH}" height="{height:.0f}" role="img" '
            'aria-label="pool occupancy after each task">',
            _occupancy_steps(census, values, step_w),
            _occupancy_grid(levels, sizes[0] if sizes else None),
            *(_series_path(key, values, step_w, levels.y) for key, _ in SERIES),
            _task_labels(census, step_w, levels.bottom),
            _occupancy_legend(levels.bottom + 34),
            "</svg>",
        ]
    )


def _occupancy_steps(
    census: Sequence[TaskCensus], values: Sequence[Mapping[str, int] | None], step_w: float
) -> str:
    """A column per task, carrying its numbers and hover text; shaded, with a bar above, where
    the pool was exhausted."""
    parts = []
    first = True
    for i, (c, v) in enumerate(zip(census, values, strict=True)):
        x = OCC_X0 + i * step_w
        exhausted = c.pool is not None and c.pool.exhausted
        data = "".join(f' data-{k}="{n}"' for k, n in (v or {}).items())
        hover = f"task {c.index + 1} ({c.kind}): {console.pool_line(c)}"
        if exhausted:
            hover += " — exhausted: the next checkout waits"
        parts.append(
            f'<rect class="step{" exhausted" if exhausted else ""}" data-task="{c.index}"{data} '
            f'x="{x:.1f}" y="{OCC_TOP}" width="{step_w:.1f}" height="{OCC_H}" '
            f'shape-rendering="crispEdges"><title>{_e(hover)}</title></rect>'
        )
        if not exhausted:
            continue
        parts.append(
            f'<line class="exhausted-edge" x1="{x:.1f}" y1="{OCC_TOP - 10}" '
            f'x2="{x + step_w:.1f}" y2="{OCC_TOP - 10}"/>'
        )
        if first:
            parts.append(
                f'<text class="exhausted-label" x="{x + 3:.1f}" y="{OCC_TOP - 16}">exhausted</text>'
            )
            first = False
    return "".join(parts)


def _occupancy_grid(levels: _Levels, max_size: int | None) -> str:
    parts = []
    for k in _ticks(levels.top):
        y = levels.y(k)
        parts.append(
            f'<line class="grid" x1="{OCC_X0}" y1="{y:.1f}" x2="{PLOT_X1}" y2="{y:.1f}"/>'
            f'<text class="small" x="{OCC_X0 - 6}" y="{y + 3:.1f}" text-anchor="end">{k}</text>'
        )
    if max_size is not None:
        y = levels.y(max_size)
        parts.append(
            f'<line class="max-size" x1="{OCC_X0}" y1="{y:.1f}" x2="{PLOT_X1}" y2="{y:.1f}"/>'
            f'<text class="small" x="8" y="{y + 3:.1f}">max_size {max_size}</text>'
        )
    return "".join(parts)


def _series_path(
    key: str,
    values: Sequence[Mapping[str, int] | None],
    step_w: float,
    y: Callable[[float], float],
) -> str:
    """One series as steps, a gap where a task had no pool reading; ``size`` is an area, so
    the lines drawn over it stay visible when the numbers coincide."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] | None = None
    for i, v in enumerate(values):
        if v is None:
            current = None
            continue
        if current is None:
            current = []
            runs.append(current)
        current.append((OCC_X0 + i * step_w, y(v[key])))
    area = key == "size"
    commands = []
    for run in runs:
        x, level = run[0]
        start = f"M{x:.1f},{y(0):.1f} V{level:.1f}" if area else f"M{x:.1f},{level:.1f}"
        steps = "".join(f" V{level:.1f} H{x + step_w:.1f}" for x, level in run)
        commands.append(start + steps + (f" V{y(0):.1f} Z" if area else ""))
    return f'<path class="series {key}" d="{" ".join(commands)}"/>'


def _task_labels(census: Sequence[TaskCensus], step_w: float, bottom: float) -> str:
    every = max(1, math.ceil(28 / step_w))
    parts = []
    for i, c in enumerate(census):
        if i % every:
            continue
        x = OCC_X0 + (i + 0.5) * step_w
        mark = "" if c.ok else " ✗"
        parts.append(
            f'<text class="small" x="{x:.1f}" y="{bottom + 12:.1f}" text-anchor="middle">'
            f"{c.index + 1}{mark}</text>"
        )
    parts.append(f'<text class="small" x="8" y="{bottom + 12:.1f}">task</text>')
    return "".join(parts)


def _occupancy_legend(y: float) -> str:
    parts = []
    x = OCC_X0
    for key, label in SERIES:
        parts.append(
            f'<line class="series {key}" x1="{x}" y1="{y - 4}" x2="{x + 20}" y2="{y - 4}"/>'
            f'<text class="small" x="{x + 25}" y="{y}">{label}</text>'
        )
        x += 110
    parts.append(
        f'<rect class="exhausted-swatch" x="{x}" y="{y - 9}" width="20" height="10"/>'
        f'<text class="small" x="{x + 25}" y="{y}">exhausted: the next checkout waits</text>'
    )
    return "".join(parts)


# -- leak sites, findings, fixes ---------------------------------------------------------------


def _leak_sites(sites: Sequence[LeakSite]) -> str:
    if not sites:
        return ""
    return "<h3>Leak sites</h3>\n" + "\n".join(_leak_site(s) for s in sites)


def _leak_site(site: LeakSite) -> str:
    count = f"x{site.count} connection{'' if site.count == 1 else 's'}"
    if site.tasks:
        more = ", …" if site.count > len(site.tasks) else ""
        count += f", from {', '.join(site.tasks)}{more}"
    parts = [
        f'<div class="leak-site {site.kind.value}">',
        f'<p><span class="badge {site.kind.value}">{site.kind.value}</span> '
        f"<code>{_e(location(site))}</code> via {_e(site.thread)}</p>",
        f"<p>{_e(site.reason)}</p>",
        f'<p class="muted">{_e(count)}</p>',
    ]
    if site.excerpt:
        parts.append(_excerpt(site))
    if site.stack:
        parts.append(f'<p class="muted">stack: <code>{_e(stack_line(site.stack))}</code></p>')
    parts.append("</div>")
    return "\n".join(parts)


def _excerpt(site: LeakSite) -> str:
    lines = []
    for line in site.excerpt:
        cls = "line site" if line.number == site.line else "line"
        lines.append(
            f'<span class="{cls}" data-line="{line.number}"><span class="ln">{line.number}</span>'
            f"{_e(line.text)}</span>"
        )
    return f'<pre class="excerpt"><code>{"".join(lines)}</code></pre>'


def _findings(findings: Iterable[Finding], heading: str) -> str:
    items = [
        f'<li class="finding {f.severity.value}" data-code="{_e(f.code)}"><strong>{_e(f.code)}'
        f'</strong> {_e(f.severity.value)}: {_e(f.message)}<br><span class="muted">fix: '
        f"{_e(f.fix)}</span></li>"
        for f in findings
    ]
    if not items:
        return ""
    return f'<section class="findings"><h2>{_e(heading)}</h2><ul>{"".join(items)}</ul></section>'


def _subject_fix(fix: Fix, closing: Fix | None) -> str:
    lines = console.subject_fix_lines(fix, closing)
    head = lines[0].plain.strip()
    body = [t.plain for t in lines[1:]]
    code = _diff(body) if fix.diff else f"<pre><code>{_e(chr(10).join(body))}</code></pre>"
    return (
        f'<div class="fix" data-proven="{str(fix.proven).lower()}"><h3>Fix {_proven(fix)}</h3>'
        f"<p>{_e(head)}</p>{code if body else ''}</div>"
    )


def _closing_fix(fix: Fix | None) -> str:
    if fix is None:
        return ""
    return (
        f'<section class="fix closing" data-proven="{str(fix.proven).lower()}"><h2>Fix '
        f"{_proven(fix)}</h2><p>{_e(console.closing_fix_line(fix))}</p>"
        f"<pre><code>{_e(fix.code.rstrip())}</code></pre></section>"
    )


def _proven(fix: Fix) -> str:
    if fix.proven:
        return '<span class="badge proven">proven here</span>'
    return '<span class="badge unproven">not run on your code</span>'


def _diff(lines: Sequence[str]) -> str:
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            cls = "file"
        else:
            cls = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        out.append(f'<span class="{cls}">{_e(line)}</span>')
    return f'<pre class="diff"><code>{chr(10).join(out)}</code></pre>'


# -- small pieces -----------------------------------------------------------------------------

LEGEND = (
    '<ul class="legend">'
    + "".join(
        f'<li><svg width="26" height="12"><rect class="{cls}" x="1" y="1" width="24" height="10"/>'
        f"</svg> {label}</li>"
        for cls, label in (
            ("span returned", "checked out → returned"),
            ("span held", "held by a live thread"),
            ("span open", "open (no pool)"),
        )
    )
    + '<li><svg width="26" height="16"><g class="lost-mark">'
    + _cross(13, 8)
    + "</g></svg> lost: never returned, ✕ where its thread ended</li>"
    + '<li><svg width="26" height="12"><rect class="span returned inherited" x="2" y="2" '
    'width="22" height="8"/></svg> inherited from the parent process</li>' + "</ul>"
)


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(rows)
    return f'<table class="numbers"><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>'


def _badge(verdict: Verdict) -> str:
    return f'<span class="badge {verdict.value}">{_e(verdict.value)}</span>'


def _literals(text: str) -> str:
    """Escaped, with the descriptions' ``code`` spans as code."""
    pieces = _e(text).split("``")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _e(text: str) -> str:
    return escape(text, quote=True)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_width(text: str, size: float) -> float:
    """Roughly how wide DejaVu Sans sets ``text``: enough to size a pill or skip a label."""
    return len(text) * size * 0.62


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 0.001
    magnitude = 10 ** math.floor(math.log10(raw))
    for k in (1, 2, 5, 10):
        if raw <= k * magnitude:
            return k * magnitude
    return 10 * magnitude


def _ticks(top: int) -> list[int]:
    step = max(1, math.ceil(top / 5))
    return list(range(0, top + 1, step))


def _duration(seconds: float) -> str:
    """``2.5 ms`` or ``1.23 s``, three significant digits."""
    if abs(seconds) >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1000:.3g} ms"


def _tick(t: float, step: float, in_seconds: bool) -> str:
    """An axis label: one unit along the whole axis, as many decimals as its step needs."""
    value, unit, size = (t, "s", step) if in_seconds else (t * 1000, "ms", step * 1000)
    decimals = max(0, -math.floor(math.log10(size) + 1e-9))
    return f"{value:.{decimals}f} {unit}"
