//! What an import did (or, for a dry run, would do): counts per hub table, every skipped row
//! with its reason, and notes. Rows are named by position and non-secret labels only.

use std::fmt;

use crate::{
    plan::{Outcome, Plan, RowOutcome},
    source::LegacyData,
};

/// Counts and listed rows of one hub table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    /// Hub table name.
    pub name: &'static str,
    /// Rows created.
    pub imported: usize,
    /// Rows already there (identical, or different and left alone).
    pub unchanged: usize,
    /// Rows overwritten (`--update`).
    pub updated: usize,
    /// Rows not imported.
    pub skipped: usize,
    /// The skipped rows and the rows with a note.
    pub listed: Vec<RowOutcome>,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Nothing was written.
    pub dry_run: bool,
    /// The source layout, e.g. `current layout`.
    pub layout: String,
    /// One entry per hub table, in import order.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Summarise a plan.
    pub fn new(data: &LegacyData, plan: Plan, dry_run: bool) -> Self {
        let tables = plan
            .tables
            .into_iter()
            .map(|t| {
                let mut r = TableReport {
                    name: t.name,
                    ..TableReport::default()
                };
                for row in t.rows {
                    match row.outcome {
                        Outcome::Imported => r.imported += 1,
                        Outcome::Unchanged => r.unchanged += 1,
                        Outcome::Updated => r.updated += 1,
                        Outcome::Skipped(_) => r.skipped += 1,
                    }
                    if matches!(row.outcome, Outcome::Skipped(_)) || row.note.is_some() {
                        r.listed.push(row);
                    }
                }
                r
            })
            .collect();
        Self {
            dry_run,
            layout: data.layout.to_string(),
            tables,
        }
    }

    /// The report of one hub table.
    pub fn table(&self, name: &str) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Rows skipped, over all tables.
    pub fn skipped(&self) -> usize {
        self.tables.iter().map(|t| t.skipped).sum()
    }

    /// Whether the command should exit successfully.
    pub fn succeeded(&self, allow_skips: bool) -> bool {
        allow_skips || self.skipped() == 0
    }
}

/// The source table a hub table's rows come from (for row positions).
fn source_table(hub_table: &str) -> &'static str {
    match hub_table {
        "accounts" | "api_tokens" => "accounts",
        "licenses" => "licenses",
        "license_usage" => "usage_counters",
        _ => "builds",
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.dry_run {
            true => "DRY RUN, nothing was written; a real run would do this",
            false => "written",
        };
        writeln!(
            f,
            "Import from the original server, {}: {mode}",
            self.layout
        )?;
        writeln!(
            f,
            "{:<14} {:>9} {:>10} {:>8} {:>8}",
            "hub table", "imported", "unchanged", "updated", "skipped"
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "{:<14} {:>9} {:>10} {:>8} {:>8}",
                t.name, t.imported, t.unchanged, t.updated, t.skipped
            )?;
        }
        for t in &self.tables {
            for row in &t.listed {
                let at = format!("{} row {} ({})", source_table(t.name), row.row, row.label);
                if let Outcome::Skipped(reason) = &row.outcome {
                    writeln!(f, "skipped {:<13} {at}: {reason}", t.name)?;
                }
                if let Some(note) = &row.note {
                    writeln!(f, "note    {:<13} {at}: {note}", t.name)?;
                }
            }
        }
        match self.skipped() {
            0 => writeln!(f, "No row was skipped."),
            n => writeln!(
                f,
                "{n} row(s) skipped; fix them in the original and run again, or accept with --allow-skips."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{plan::TablePlan, source::Layout};

    fn report(outcomes: Vec<Outcome>) -> Report {
        let data = LegacyData {
            layout: Layout {
                account_id: true,
                device_bound: false,
                project_bundle_id: false,
            },
            licenses: vec![],
            accounts: vec![],
            usage: vec![],
            builds: None,
        };
        let rows = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| RowOutcome {
                row: i + 1,
                label: "sha256 0011aabb".into(),
                outcome,
                note: None,
            })
            .collect();
        let plan = Plan {
            tables: vec![TablePlan {
                name: "licenses",
                rows,
            }],
            writes: vec![],
        };
        Report::new(&data, plan, true)
    }

    #[test]
    fn skips_fail_the_run_unless_allowed_and_are_listed() {
        let r = report(vec![
            Outcome::Imported,
            Outcome::Unchanged,
            Outcome::Skipped("unknown tier \"gold\"".into()),
        ]);
        let t = r.table("licenses").unwrap();
        assert_eq!(
            (t.imported, t.unchanged, t.updated, t.skipped),
            (1, 1, 0, 1)
        );
        assert!(!r.succeeded(false));
        assert!(r.succeeded(true));
        let text = r.to_string();
        assert!(text.contains("DRY RUN"));
        assert!(text.contains("older layout (licenses without device_bound, project_bundle_id)"));
        assert!(
            text.contains("skipped licenses      licenses row 3 (sha256 0011aabb): unknown tier")
        );
    }

    #[test]
    fn a_clean_run_succeeds() {
        let r = report(vec![Outcome::Imported, Outcome::Updated]);
        assert!(r.succeeded(false));
        assert!(r.to_string().contains("No row was skipped."));
    }
}
