//! dispatcher scenarios.
