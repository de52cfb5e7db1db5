"""Progress for dashboards and notes (CONTRACT.md section 4, issues 11 and 21): per-goal courses with reliable
change, client measures and client-level recovery, the caseload (counts and client rows), a strengths-based
clinical summary and an embeddable SVG chart.

Every definition is written out in docs/progress.md; every number is computed in PostgreSQL by the statements of
``sql.py`` (the courses) and ``caseload.py`` (rows, sorting, paging); ``service.py`` holds the use cases REST
(``rest.py``) and GraphQL (``service/graphql/progress.py``) both call. The summary is ``summary.py`` (with
``record.py``, ``sections.py``, ``wording.py``, ``hints.py``); the chart ``chart.py`` and ``chart_svg.py``.
"""
