//! `pgsecrets bench --quick`: every scenario runs end to end against its own
//! PostgreSQL and pgsecrets servers and reports figures. Nothing here looks
//! at how fast anything was: the benchmark is the place for numbers.

use std::process::Command;

use crate::support::pg::{Pg, PgVersion};

/// `pgsecrets bench --quick` with `args` on PostgreSQL 15 when it is
/// there; its standard output, once it exited with success.
fn quick_bench(args: &[&str]) -> String {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_pgsecrets"));
    bench.args(["bench", "--quick"]).args(args);
    if let Some(bin) = Pg::bin_dir(PgVersion::V15) {
        bench.arg("--pg-bin").arg(bin);
    }
    let out = bench.output().expect("run pgsecrets bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed ({})\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

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
    let stdout = quick_bench(&[]);

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
        ("audit", "c=16 iter=4096, file audit device", "creds/s"),
        ("audit", "c=16 iter=1, file audit device", "p99 ms"),
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

/// The bao binary the peer scenario would find (as `openbao::find` looks).
fn openbao() -> Option<std::path::PathBuf> {
    let beside = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-compat/bin/bao");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("bao"))
        .find(|p| p.is_file())
}

#[test]
fn a_quick_peer_benchmark_compares_with_openbao_or_says_why_not() {
    let stdout = quick_bench(&["--scenario", "peer"]);
    if openbao().is_none() {
        // Skipped, not failed: a machine without OpenBao.
        assert!(stdout.contains("note: peer: skipped"), "{stdout}");
        return;
    }
    let rows = table_rows(&stdout);
    for storage in ["in-memory", "durable"] {
        for (case, metric) in [
            ("leases", "RSS MiB"),
            ("revoke-prefix", "users/s"),
            ("expiry", "lag p99 s"),
            ("expiry", "dropped early"),
            ("c=1", "creds/s"),
            ("c=16", "p99 ms"),
            ("c=16", "CPU ms/cred"),
        ] {
            let row = rows
                .iter()
                .find(|r| {
                    r[0] == "peer"
                        && r[1].contains(storage)
                        && r[1].contains(case)
                        && r[2] == metric
                })
                .unwrap_or_else(|| panic!("no row {storage} {case} {metric}:\n{stdout}"));
            for figure in [&row[3], &row[4]] {
                let x: f64 = figure
                    .parse()
                    .unwrap_or_else(|_| panic!("{figure:?} is not a number:\n{stdout}"));
                assert!(x.is_finite(), "{row:?}");
            }
        }
    }
    assert!(
        rows.iter()
            .any(|r| r[1].contains("durable") && r[1].contains("restart")),
        "{stdout}"
    );
}
