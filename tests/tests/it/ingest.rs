//! ingest scenarios.
