"""Fuzzing every loader: structured mutations of valid files (mutate.py), the loaders and what
"accepted" has to survive (targets.py), one input run under a deadline (run.py). Used by
`kpilot bench fuzz` (numpy random generator) and tests/fuzz (Hypothesis picks the seeds)."""
