"""The comparison report: run records in, tables (Markdown, LaTeX, CSV) and figures out.

Modules, from the bottom of the import graph up (none imports one above it):
    records     load, validate and group run records; metrics by variant
    cells       a table cell: mean ± std over seeds, its kind mark, a note or the reason there is no number
    tables      the main table (columns registered by the metric families), likelihood details, sampling modes
    claims      the section "What the seed says, measured"
    figures     every figure genbench draws (a run's, the report's, the speed report's)
    speed       the speed report of `genbench speed`'s records
    comparison  `genbench report DIR`: all of the above for one folder of records
"""
