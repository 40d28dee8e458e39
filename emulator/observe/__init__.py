"""Tracepoints, trace buffer, metrics and reports."""
