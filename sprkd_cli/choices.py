"""The fixed values of the commands' options, importable without torch or the store: the CLI types these
options as choices (the parser refuses any other value, --help lists them) and the services check the
same values when called from Python."""

RUN_STATUSES = ("running", "finished", "failed", "interrupted", "crashed")
RUN_KINDS = ("teacher", "student")
EXECUTORS = ("local", "ray")
AT = ("best-val", "final")  # the weights a value is of: the best-validation epoch's or the final ones
EXPORT_FORMATS = ("csv", "json", "parquet")
# stats
TESTS = ("t", "rank", "aso")  # the pairwise tests of `stats --test`
CORRECTIONS = ("holm", "bonferroni", "none")  # multiple-testing adjustments of `stats --correction`
# hessian-report
DTYPES = ("float32", "float64")
MODES = ("eval", "train")
HVP_KINDS = ("auto", "func", "double")
TRACE_METHODS = ("hutchpp", "hutchinson")
WEIGHTS = ("final", "best-val")
