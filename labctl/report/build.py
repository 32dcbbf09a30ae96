"""A run record (and what was read back for it) into a :class:`~labctl.report.model.Report`.

Every figure shown comes from the run record; the spooled data only adds plots and the data
quality figures, and re-evaluating it checks that the record is reproducible.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from labctl import __version__
from labctl.evaluators.result import EvaluationResult, SubjectResult
from labctl.plugins import PluginRegistry
from labctl.report.compare import Matrix, matrix
from labctl.report.inputs import ReportInputs
from labctl.report.model import (
    Block,
    Bullets,
    Cell,
    Facts,
    Paragraph,
    Preformatted,
    Report,
    Section,
    Table,
)
from labctl.report.numbers import cell, num, span, utc, utc_s
from labctl.report.sections import EvaluatorSection, SectionContext, section_for
from labctl.store.records import RunRecord

MAX_OUTAGES_LISTED = 12
MAX_DETAILS_PER_REASON = 3


def build_report(inputs: ReportInputs, sections: PluginRegistry[type[EvaluatorSection]]) -> Report:
    """The report of one run."""
    rec = inputs.record
    ev = rec.evaluation
    part = section_for(rec.kind, sections)
    ctx = SectionContext(record=rec, spec=inputs.spec, evaluator=inputs.evaluator)
    verdict, verdict_text = _verdict(rec)
    body: list[Section] = [_summary(rec, ctx, part)]
    if ev is not None:
        body.append(_criteria(ev))
        body.append(_limitations(ev, part, ctx))
        body.extend(part.sections(ctx))
        if len(ev.subjects) > 1:
            body.append(
                Section(
                    "comparison",
                    "Vendor comparison",
                    [
                        matrix_table(matrix([rec])),
                        Paragraph(
                            "★ marks the best value of each criterion among the candidates "
                            "(highest for a minimum, lowest for a maximum, nearest the middle "
                            "of a range)."
                        ),
                    ],
                )
            )
    body.append(_quality(inputs))
    body.append(_provenance(inputs))
    numbered = [
        Section(s.id, f"{i}. {s.title}", s.blocks, s.subsections) for i, s in enumerate(body, 1)
    ]
    return Report(
        title=rec.title,
        subtitle=f"Trial {rec.trial} · run {rec.id}",
        verdict=verdict,
        verdict_text=verdict_text,
        run_id=rec.id,
        generated_at=utc_s(time.time()),
        labctl_version=__version__,
        sections=numbered,
    )


def _verdict(rec: RunRecord) -> tuple[str, str]:
    ev = rec.evaluation
    if ev is None:
        return rec.status.upper(), f"No verdict: the run was {rec.status}. {rec.message}".strip()
    n = len(ev.subjects)
    failed = [s.subject for s in ev.subjects if not s.passed]
    lims = sum(len(s.limitations) for s in ev.subjects)
    if not failed and n:
        text = (
            f"PASS — {'the candidate meets' if n == 1 else f'all {n} candidates meet'} "
            "every criterion."
        )
    elif not n:
        text = "FAIL — there was no candidate to judge."
    else:
        text = (
            f"FAIL — {len(failed)} of {n} candidate{'s' if n != 1 else ''} "
            f"{'fails' if len(failed) == 1 else 'fail'} at least one criterion: "
            f"{', '.join(failed)}."
        )
    if lims:
        text += (
            f" The condition breakdown found {lims} limitation{'s' if lims != 1 else ''} "
            "(see Limitations)."
        )
    return ("PASS" if ev.passed else "FAIL"), text


def _summary(rec: RunRecord, ctx: SectionContext, part: EvaluatorSection) -> Section:
    facts = [
        ("Trial", f"{rec.title} ({rec.trial})"),
        (
            "Run",
            rec.id + (f" — a re-score of run {rec.rescored_from}" if rec.rescored_from else ""),
        ),
        ("Status", rec.status),
        ("Evaluator", rec.kind),
        ("Rig", rec.rig),
        ("Run started / ended", f"{utc_s(rec.started_at)} / {utc_s(rec.ended_at)}"),
    ]
    if rec.device_time is not None:
        lo, hi = rec.device_time
        facts.append(("Measured period (device time)", f"{utc(lo)} → {utc(hi)} ({span(hi - lo)})"))
    facts.append(("Spec", f"{rec.spec.path} (SHA-256 {rec.spec.sha256[:16]}…)"))
    blocks: list[Block] = [Facts(facts)]
    if rec.message:
        blocks.append(Paragraph(rec.message, tone="note"))
    blocks.append(
        Table(
            columns=["role", "vendor", "device", "model", "serial", "firmware", "hardware"],
            rows=[
                [
                    Cell(d.role),
                    Cell(d.vendor),
                    Cell(d.device),
                    Cell(d.model),
                    Cell(d.serial),
                    Cell(d.sw_version),
                    Cell(d.hw_version),
                ]
                for d in rec.devices
            ],
            caption="Devices in the trial, as their manifests described them.",
        )
    )
    ev = rec.evaluation
    if ev is not None and ev.subjects:
        blocks.append(Paragraph("Effectiveness, per candidate:"))
        for s in ev.subjects:
            blocks.append(
                Paragraph(part.effectiveness(ctx, s), tone="pass" if s.passed else "fail")
            )
    return Section("summary", "Summary", blocks)


def _criteria(ev: EvaluationResult) -> Section:
    subs = []
    for s in ev.subjects:
        rows = []
        for c in s.criteria:
            m = s.metric(c.metric)
            ci = m.ci95 if m is not None else None
            rows.append(
                [
                    Cell(c.metric),
                    cell(
                        c.value, key=f"criterion/{s.subject}/{c.metric}", unit=m.unit if m else ""
                    ),
                    Cell(m.unit if m else ""),
                    Cell(c.target),
                    Cell(
                        f"{num(ci[0])} to {num(ci[1])}" if ci else "—",
                        key=f"ci95/{s.subject}/{c.metric}" if ci else "",
                    ),
                    Cell("pass" if c.passed else "FAIL", status="pass" if c.passed else "fail"),
                ]
            )
        extra = [m for m in s.metrics if m.name not in {c.metric for c in s.criteria}]
        subs.append(
            Section(
                f"criteria-{s.subject}",
                f"{s.subject}"
                + (f" — {s.model}" if s.model else "")
                + (" — PASS" if s.passed else " — FAIL"),
                [
                    Table(
                        columns=["criterion", "value", "unit", "target", "95 % CI", "result"],
                        rows=rows,
                    ),
                    Table(
                        columns=[m.name for m in extra],
                        rows=[
                            [
                                cell(m.value, key=f"metric/{s.subject}/{m.name}", unit=m.unit)
                                for m in extra
                            ]
                        ],
                        caption="Further figures at the same averaging (units: "
                        + ", ".join(f"{m.name} {m.unit}" for m in extra if m.unit)
                        + ").",
                    ),
                ],
            )
        )
    return Section(
        "criteria",
        "Criteria",
        [Paragraph("Each candidate's figures against the trial's targets.")],
        subs,
    )


def _limitations(ev: EvaluationResult, part: EvaluatorSection, ctx: SectionContext) -> Section:
    texts = [lim.text for s in ev.subjects for lim in s.limitations]
    blocks: list[Block] = []
    if texts:
        blocks.append(Bullets(texts, tone="fail"))
    elif any(s.breakdown for s in ev.subjects):
        blocks.append(
            Paragraph(
                "No limitation found: every judged condition bin meets the targets.", tone="pass"
            )
        )
    else:
        blocks.append(Paragraph("The trial did not break the results down by condition."))
    blocks.extend(part.limitation_blocks(ctx))
    subs = [
        Section(f"breakdown-{s.subject}", f"Breakdown: {s.subject}", [_breakdown_table(s)])
        for s in ev.subjects
        if s.breakdown
    ]
    return Section("limitations", "Limitations", blocks, subs)


def _breakdown_table(s: SubjectResult) -> Table:
    names = list(dict.fromkeys(k for b in s.breakdown for k in b.metrics))
    rows = []
    for i, b in enumerate(s.breakdown):
        rows.append(
            [
                Cell(b.condition),
                Cell(b.label),
                cell(float(b.n), key=f"bin/{s.subject}/{i}/n", digits=0),
            ]
            + [
                cell(
                    b.metrics.get(n),
                    key=f"bin/{s.subject}/{i}/{n}",
                    status="fail" if n in b.failed else "",
                )
                for n in names
            ]
            + [
                Cell(
                    ", ".join(b.failed) or ("—" if b.n else "no data"),
                    status="fail" if b.failed else "",
                )
            ]
        )
    return Table(
        columns=["condition", "bin", "pairs", *names, "fails"],
        rows=rows,
        caption="Figures on the 1-hour pairs that fell in each bin; bins with too few pairs "
        "are shown but not judged.",
    )


def matrix_table(m: Matrix) -> Table:
    """The comparison matrix as a report table."""
    rows = []
    for row in m.rows:
        cells = [Cell(row.label(m.several_runs)), Cell(row.model)]
        for name in m.criteria:
            c = row.cells.get(name)
            if c is None:
                cells.append(Cell("—"))
                continue
            mark = " ★" if c.best else ""
            cells.append(
                Cell(
                    num(c.value) + mark,
                    value=c.value,
                    status="best" if c.best else ("pass" if c.passed else "fail"),
                    key=f"matrix/{row.run}/{row.subject}/{name}",
                )
            )
        cells.append(
            Cell("PASS" if row.passed else "FAIL", status="pass" if row.passed else "fail")
        )
        rows.append(cells)
    return Table(
        columns=[
            "candidate",
            "model",
            *[f"{n} ({' / '.join(m.targets[n])})" for n in m.criteria],
            "verdict",
        ],
        rows=rows,
        caption="Criteria × candidates; a red value misses its target.",
    )


def _quality(inputs: ReportInputs) -> Section:
    rec = inputs.record
    c = rec.counters
    blocks: list[Block] = [
        Facts(
            [
                ("Readings received", f"{c.readings:,}"),
                ("Readings evaluated (in the measured windows)", f"{c.readings_evaluated:,}"),
                ("Duplicates dropped", f"{c.duplicates:,}"),
                ("Rejected messages", f"{sum(c.rejected.values()):,}"),
            ]
        )
    ]
    if inputs.quality:
        roles = {d.key: d.role for d in rec.devices}
        blocks.append(
            Table(
                columns=[
                    "device",
                    "role",
                    "samples in window",
                    "expected",
                    "completeness",
                    "sessions",
                    "missing seq",
                    "outages",
                    "longest outage",
                ],
                rows=[
                    [
                        Cell(q.device),
                        Cell(roles.get(q.device, "")),
                        cell(float(q.samples), digits=0),
                        cell(q.expected, digits=0),
                        cell(q.completeness, key=f"quality/{q.device}/completeness"),
                        cell(float(q.sessions), digits=0),
                        cell(
                            float(q.seq_missing), digits=0, status="fail" if q.seq_missing else ""
                        ),
                        cell(float(len(q.outages)), digits=0, status="fail" if q.outages else ""),
                        Cell(span(max(o.seconds for o in q.outages)) if q.outages else "—"),
                    ]
                    for q in inputs.quality
                ],
                caption="From the spooled samples: samples within the measured windows, "
                "against the nominal rate; sequence numbers missing within a session; "
                "silences longer than 5 sampling intervals (at least 5 min).",
            )
        )
        outages = sorted(
            ((q.device, o) for q in inputs.quality for o in q.outages),
            key=lambda x: -x[1].seconds,
        )
        if outages:
            items = [
                f"{dev}: {utc(o.start)} → {utc(o.end)} ({span(o.seconds)})"
                for dev, o in outages[:MAX_OUTAGES_LISTED]
            ]
            if len(outages) > MAX_OUTAGES_LISTED:
                items.append(f"… and {len(outages) - MAX_OUTAGES_LISTED} shorter ones")
            blocks.append(Paragraph("Outages, longest first:"))
            blocks.append(Bullets(items))
        else:
            blocks.append(Paragraph("No outage: every device reported throughout.", tone="pass"))
    elif inputs.replay_note:
        blocks.append(
            Paragraph(f"Per-device figures unavailable: {inputs.replay_note}.", tone="note")
        )
    if c.rejected:
        details: dict[str, list[str]] = {}
        for p in inputs.other_points:
            if p.measurement != "rejected":
                continue
            reason = p.tags.get("reason", "")
            got = details.setdefault(reason, [])
            if len(got) < MAX_DETAILS_PER_REASON:
                who = "/".join(x for x in (p.tags.get("vendor"), p.tags.get("device")) if x)
                got.append(
                    f"{who}: {p.fields.get('detail', '')}"
                    if who
                    else str(p.fields.get("detail", ""))
                )
        blocks.append(
            Table(
                columns=["reason", "messages", "examples"],
                rows=[
                    [
                        Cell(reason),
                        cell(float(n), key=f"rejected/{reason}", digits=0),
                        Cell(" | ".join(details.get(reason, [])) or "—"),
                    ]
                    for reason, n in sorted(c.rejected.items(), key=lambda x: -x[1])
                ],
                caption="Messages dropped at the edge, by reason (each was explained to the "
                "vendor on its error topic).",
            )
        )
    else:
        blocks.append(Paragraph("No message was rejected."))
    if rec.evaluation is not None and rec.evaluation.notes:
        blocks.append(Paragraph("Evaluator notes:"))
        blocks.append(Bullets(list(rec.evaluation.notes)))
    return Section("quality", "Data quality", blocks)


def _provenance(inputs: ReportInputs) -> Section:
    rec = inputs.record
    blocks: list[Block] = [
        Facts(
            [
                ("Run id", rec.id),
                ("Re-score of", rec.rescored_from or "—"),
                ("Spec file", rec.spec.path),
                ("Spec SHA-256", rec.spec.sha256),
                ("Spec text", inputs.spec_note),
                ("labctl version (run / report)", f"{rec.labctl_version} / {__version__}"),
                ("Data directory", rec.data_dir),
            ]
        ),
        Table(
            columns=[
                "device",
                "serial",
                "hardware",
                "firmware",
                "manifest version",
                "session",
                "interval (s)",
                "readings",
                "rejected",
            ],
            rows=[
                [
                    Cell(d.key),
                    Cell(d.serial),
                    Cell(d.hw_version),
                    Cell(d.sw_version),
                    cell(float(d.manifest_version), digits=0),
                    Cell(d.session),
                    cell(d.interval_s),
                    cell(float(d.readings), digits=0),
                    cell(float(d.rejected), digits=0),
                ]
                for d in rec.devices
            ],
            caption="Device manifests as accepted at preflight.",
        ),
    ]
    raw: list[tuple[str, str]] = []
    data_run = rec.rescored_from or rec.id
    if rec.spool is not None:
        sp = rec.spool
        raw += [
            ("Spool directory", sp.directory),
            (
                "Spool range",
                f"segment {sp.start[0]} byte {sp.start[1]} → segment {sp.end[0]} "
                f"byte {sp.end[1]} (end exclusive)",
            ),
        ]
    raw += [
        ("TSDB measurement", "telemetry (readings); verdict, event, rejected"),
        ("TSDB tag", f"run = {data_run}"),
        # Shown to the reader, never executed; run ids are labctl's own ([0-9a-f-]).
        ("InfluxQL", f'SELECT * FROM "telemetry" WHERE "run" = \'{data_run}\''),  # noqa: S608
    ]
    if inputs.reproduced is True:
        raw.append(
            (
                "Reproducible",
                "yes — re-evaluating the spooled data gives the recorded figures exactly",
            )
        )
    elif inputs.reproduced is False:
        raw.append(
            (
                "Reproducible",
                "NO — re-evaluating the spooled data gives different figures from the run record",
            )
        )
    else:
        raw.append(("Reproducible", f"not checked: {inputs.replay_note or 'no verdict'}"))
    blocks.append(Facts(raw))
    if rec.spool is not None and rec.spool.segments:
        blocks.append(
            Table(
                columns=["segment", "SHA-256 of the run's bytes", "now"],
                rows=[
                    [
                        Cell(name),
                        Cell(digest),
                        Cell(
                            inputs.segments_now.get(name, "?"),
                            status="pass"
                            if inputs.segments_now.get(name) == "unchanged"
                            else "muted",
                        ),
                    ]
                    for name, digest in rec.spool.segments.items()
                ],
                caption="Checksums cover the run's own byte range in each segment (later runs "
                "append after it); 'changed' would mean the recorded data was altered.",
            )
        )
    if rec.sinks:
        blocks.append(
            Table(
                columns=["TSDB sink", "points written", "caught up", "last error"],
                rows=[
                    [
                        Cell(s.name),
                        cell(float(s.points_written), digits=0),
                        Cell(
                            "yes" if s.caught_up else "no", status="pass" if s.caught_up else "fail"
                        ),
                        Cell(s.last_error or "—"),
                    ]
                    for s in rec.sinks
                ],
            )
        )
    if inputs.spec_text is not None:
        blocks.append(Preformatted(inputs.spec_text, caption=f"The spec as run ({rec.spec.path})"))
    return Section("provenance", "Provenance", blocks)


def compare_report(records: Sequence[RunRecord]) -> Report:
    """A short document holding the comparison matrix of several runs."""
    m = matrix(records)
    facts = [
        (
            r.id,
            f"{r.status}, {utc_s(r.started_at)}, spec {r.spec.path} "
            f"({r.spec.sha256[:12]}…)"
            + (f", re-score of {r.rescored_from}" if r.rescored_from else ""),
        )
        for r in records
    ]
    best = [r.id for r in records if r.evaluation is not None and r.evaluation.passed]
    return Report(
        title=f"Comparison: {records[0].title}",
        subtitle=f"Trial {m.trial} · {len(records)} run{'s' if len(records) != 1 else ''}",
        verdict="COMPARE",
        verdict_text=f"{len(m.rows)} candidate results from {len(records)} run(s); "
        f"{len(best)} run(s) passed.",
        run_id=",".join(m.runs),
        generated_at=utc_s(time.time()),
        labctl_version=__version__,
        sections=[
            Section(
                "comparison",
                "1. Comparison matrix",
                [
                    matrix_table(m),
                    Paragraph(
                        "★ marks the best value of each criterion (highest for a minimum, "
                        "lowest for a maximum, nearest the middle of a range)."
                    ),
                ],
            ),
            Section("runs", "2. Runs", [Facts(facts)]),
        ],
    )
