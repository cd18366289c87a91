//! The fault log behind `docs/faults.md`: each fault scenario records the fault, what the hub
//! did and what the clients saw (with the figures it measured) as one table row in
//! `target/faults/<slug>.md`. `scripts/faults-report.sh` renders the rows into
//! `docs/faults.md` (`make faults` runs both), so the table is what the tests saw.

use std::path::PathBuf;

/// One fault as a scenario saw it.
#[derive(Debug, Clone)]
pub struct Fault<'a> {
    /// File name of the row (stable, unique per scenario); rows are ordered by it.
    pub slug: &'a str,
    /// What failed.
    pub fault: &'a str,
    /// What the hub did and the clients saw, with measured figures.
    pub outcome: String,
    /// The scenario (`module::test`).
    pub test: &'a str,
}

/// Where the rows go: `faults/` beside the attack log's folder in the target directory.
pub fn dir() -> PathBuf {
    crate::attacks::dir().with_file_name("faults")
}

/// Record `fault` (called once the scenario's assertions have passed).
pub fn record(fault: &Fault<'_>) {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let row = format!(
        "| {} | {} | `{}` |\n",
        cell(fault.fault),
        cell(&fault.outcome),
        cell(fault.test)
    );
    let dir = dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{}.md", fault.slug)), row);
    }
}
