//! Attacks against a hub on the public internet (issue 15): each scenario sends the abusive
//! requests, asserts the limit that stops them, and records a row of `docs/attacks.md`
//! (`perry_hub_tests::attacks`).

mod connections;
mod licences;
mod support;
mod uploads;
mod workers;
