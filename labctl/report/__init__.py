"""Trial reports: one self-contained HTML document (and a PDF of it) per run.

* :mod:`labctl.report.model` — the typed blocks a report is made of;
* :mod:`labctl.report.build` — a run record (plus its spooled data) into a report;
* :mod:`labctl.report.sections` — the per-evaluator parts, registered by evaluator name;
* :mod:`labctl.report.html` / :mod:`labctl.report.pdf` — rendering and writing files;
* :mod:`labctl.report.compare` — the criteria × candidates matrix across runs.
"""
