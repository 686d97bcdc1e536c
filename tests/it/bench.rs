//! `pgsecrets bench --quick`: every scenario runs end to end against its own
//! PostgreSQL and pgsecrets servers and reports figures. Nothing here looks
//! at how fast anything was: the benchmark is the place for numbers.

use std::process::Command;

use crate::support::pg::{Pg, PgVersion};

/// The table's rows (`| a | b |` lines) as trimmed cells, header and rule excluded.
fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells[0] != "scenario" && !cells[0].starts_with('-'))
        .collect()
}

#[test]
fn a_quick_benchmark_reports_figures_for_every_scenario_and_a_summary() {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_pgsecrets"));
    bench.args(["bench", "--quick"]);
    if let Some(bin) = Pg::bin_dir(PgVersion::V15) {
        bench.arg("--pg-bin").arg(bin);
    }
    let out = bench.output().expect("run pgsecrets bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed ({})\n{stdout}\n{stderr}",
        out.status
    );

    let rows = table_rows(&stdout);
    let expected = [
        ("issue", "c=1 iter=4096", "creds/s"),
        ("issue", "c=4 iter=4096", "p50 ms"),
        ("issue", "c=16 iter=4096", "p99 ms"),
        ("revoke", "expiry", "users/s"),
        ("revoke", "revoke-prefix", "users/s"),
        ("scale", "leases", "ready s"),
        ("scale", "leases", "RSS MiB"),
        ("scale", "LIST", "ms"),
        ("scale", "expire at once", "leases/s"),
        ("iterations", "c=16 iter=1", "creds/s"),
        ("iterations", "c=16 iter=1", "p99 ms"),
        ("storage", "put", "puts/s"),
        ("storage", "get", "gets/s"),
        ("storage", "scan", "scans/s"),
    ];
    for (scenario, case, metric) in expected {
        let row = rows
            .iter()
            .find(|r| r[0] == scenario && r[1].contains(case) && r[2] == metric)
            .unwrap_or_else(|| panic!("no row {scenario} / {case} / {metric}:\n{stdout}"));
        let figure: f64 = row[4]
            .parse()
            .unwrap_or_else(|_| panic!("pgsecrets figure {:?} is not a number:\n{stdout}", row[4]));
        assert!(figure.is_finite() && figure >= 0.0, "{row:?}");
    }
    for row in &rows {
        for cell in [&row[3], &row[5]] {
            assert!(
                cell == "-" || cell.parse::<f64>().is_ok(),
                "floor and ratio are figures or '-': {row:?}"
            );
        }
    }
    let floors = rows.iter().filter(|r| r[3] != "-").count();
    assert!(floors >= 10, "most rows compare with a floor:\n{stdout}");

    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(summary.contains("targets met"), "{summary}");
}
