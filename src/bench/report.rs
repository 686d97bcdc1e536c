//! The benchmark's output: one row per figure (floor, pgsecrets, their
//! ratio, the target and whether it was met), notes, the table and
//! the one-line summary.

use std::fmt::Write as _;

/// How a figure is compared with its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// pgsecrets / floor must be at least this.
    RatioAtLeast(f64),
    /// pgsecrets / floor must be at most this.
    RatioAtMost(f64),
    /// The pgsecrets figure must be below this.
    Below(f64),
    /// The pgsecrets figure must be at least this.
    AtLeast(f64),
    /// The pgsecrets figure must be at most this (a count that must be 0).
    AtMost(f64),
    /// The pgsecrets figure must be below the first and its ratio at most
    /// the second (an absolute bound and no worse than the peer's).
    BelowAndRatioAtMost(f64, f64),
}

impl Target {
    fn met(self, value: f64, ratio: Option<f64>) -> bool {
        match self {
            Target::RatioAtLeast(t) => ratio.is_some_and(|r| r >= t),
            Target::RatioAtMost(t) => ratio.is_some_and(|r| r <= t),
            Target::Below(t) => value < t,
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
            Target::BelowAndRatioAtMost(t, r) => value < t && ratio.is_some_and(|x| x <= r),
        }
    }

    fn describe(self) -> String {
        match self {
            Target::RatioAtLeast(t) => format!("ratio >= {t}"),
            Target::RatioAtMost(t) => format!("ratio <= {t}"),
            Target::Below(t) => format!("< {}", number(t)),
            Target::AtLeast(t) => format!(">= {}", number(t)),
            Target::AtMost(t) => format!("<= {}", number(t)),
            Target::BelowAndRatioAtMost(t, r) => format!("< {}, ratio <= {r}", number(t)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub case: String,
    pub metric: &'static str,
    /// What PostgreSQL alone allows (or the reference configuration; in
    /// the peer scenario, OpenBao's figure).
    pub floor: Option<f64>,
    pub pgsecrets: f64,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(scenario: &'static str, case: impl Into<String>, metric: &'static str) -> Row {
        Row {
            scenario,
            case: case.into(),
            metric,
            floor: None,
            pgsecrets: f64::NAN,
            target: None,
        }
    }
    pub fn floor(mut self, value: f64) -> Row {
        self.floor = Some(value);
        self
    }
    pub fn value(mut self, value: f64) -> Row {
        self.pgsecrets = value;
        self
    }
    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }
    /// A target only where one is judged.
    pub fn with(mut self, target: Option<Target>) -> Row {
        self.target = target;
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        self.floor
            .filter(|f| *f > 0.0 && f.is_finite())
            .map(|f| self.pgsecrets / f)
    }

    /// `None` without a target.
    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.pgsecrets, self.ratio()))
    }
}

/// Rows, in the order measured, and free-text notes.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn add(&mut self, rows: impl IntoIterator<Item = Row>) {
        self.rows.extend(rows);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("bench: {note}");
        self.notes.push(note);
    }

    /// The table, as Markdown (readable as is in a terminal).
    pub fn table(&self) -> String {
        let header = [
            "scenario",
            "case",
            "metric",
            "floor",
            "pgsecrets",
            "ratio",
            "target",
            "result",
        ];
        let cells: Vec<[String; 8]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.scenario.to_string(),
                    r.case.clone(),
                    r.metric.to_string(),
                    r.floor.map(number).unwrap_or_else(|| "-".into()),
                    number(r.pgsecrets),
                    r.ratio()
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_else(|| "-".into()),
                    r.target.map(Target::describe).unwrap_or_default(),
                    match r.met() {
                        Some(true) => "met".into(),
                        Some(false) => "MISSED".into(),
                        None => String::new(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::from("|");
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                // Text columns left, figures right.
                if (3..6).contains(&i) {
                    let _ = write!(out, " {c:>w$} |");
                } else {
                    let _ = write!(out, " {c:<w$} |");
                }
            }
            out.push('\n');
            out
        };
        let mut out = line(&header.map(String::from));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for row in &cells {
            out.push_str(&line(row));
        }
        out
    }

    /// One line: targets met and missed.
    pub fn summary(&self) -> String {
        let judged: Vec<&Row> = self.rows.iter().filter(|r| r.target.is_some()).collect();
        let missed: Vec<String> = judged
            .iter()
            .filter(|r| r.met() == Some(false))
            .map(|r| {
                let got = match (r.target, r.ratio()) {
                    (Some(Target::RatioAtLeast(_) | Target::RatioAtMost(_)), Some(x)) => {
                        format!("ratio {x:.2}")
                    }
                    _ => number(r.pgsecrets),
                };
                format!("{} {} {} ({got})", r.scenario, r.case, r.metric)
            })
            .collect();
        let met = judged.len() - missed.len();
        let mut line = format!(
            "summary: {} figures, {met} of {} targets met",
            self.rows.len(),
            judged.len()
        );
        if !missed.is_empty() {
            let _ = write!(line, "; missed: {}", missed.join(", "));
        }
        line
    }
}

/// A figure with as many decimals as it needs.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_targets_and_the_summary_agree() {
        let mut report = Report::default();
        report.add([
            Row::new("issue", "c=16", "creds/s")
                .floor(100.0)
                .value(95.0)
                .target(Target::RatioAtLeast(0.9)),
            Row::new("issue", "c=16", "p99 ms")
                .floor(10.0)
                .value(20.0)
                .target(Target::RatioAtMost(1.3)),
            Row::new("scale", "1000 leases", "ready s")
                .value(0.5)
                .target(Target::Below(2.0)),
        ]);
        assert_eq!(report.rows[0].met(), Some(true));
        assert_eq!(report.rows[1].met(), Some(false));
        assert_eq!(
            report.summary(),
            "summary: 3 figures, 2 of 3 targets met; missed: issue c=16 p99 ms (ratio 2.00)"
        );
        let table = report.table();
        assert!(table.contains("| issue "), "{table}");
        assert!(table.contains("MISSED"), "{table}");
    }
}
