//! blob scenarios.
