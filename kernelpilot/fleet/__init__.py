"""Handing kernelpilot's work to the engines fleets run: DuckDB (SQL over traces), Ray, OpenTelemetry."""
