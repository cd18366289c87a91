//! download scenarios.
