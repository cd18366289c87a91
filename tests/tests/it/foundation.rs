//! foundation scenarios.
