//! finisher scenarios.
