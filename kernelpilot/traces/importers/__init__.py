"""Importers for public trace formats (ADFA-LD syscall traces, strace logs)."""
