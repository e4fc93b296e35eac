//! Golden cases of `kubectl-nmstate` run offline: every `fixtures/plugin/<case>/` holds the
//! command line (`args`, one argument a line, run in the case directory), the files it reads,
//! the expected standard output (`expected.txt`) and exit status (`exit-status`, default 0).
//!
//! `UPDATE_GOLDEN=1 cargo test -p knmstate-handler --test plugin_golden` rewrites the expected
//! files; review the diff before committing it.

use std::path::PathBuf;
use std::process::Command;

use knmstate_testkit::golden;

#[test]
fn offline_commands_print_what_was_reviewed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugin");
    let update = golden::update_requested("UPDATE_GOLDEN");
    let mut failures = Vec::new();
    for case in golden::cases(&root) {
        let args = golden::text(&case.dir.join("args"));
        let out = Command::new(env!("CARGO_BIN_EXE_kubectl-nmstate"))
            .args(args.lines().filter(|l| !l.is_empty()))
            .current_dir(&case.dir)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl-nmstate runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let got = format!(
            "{stdout}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!("stderr: {stderr}")
            }
        );
        let status_file = case.dir.join("exit-status");
        let want_status: i32 = if status_file.exists() {
            golden::text(&status_file).trim().parse().expect("a number")
        } else {
            0
        };
        let expected = case.dir.join("expected.txt");
        if update {
            golden::write(&expected, &got);
        } else if golden::text(&expected) != got {
            failures.push(format!(
                "{}:\n{}",
                case.name,
                pretty_assertions::StrComparison::new(&golden::text(&expected), &got)
            ));
        }
        if out.status.code() != Some(want_status) {
            failures.push(format!(
                "{}: exit status {:?}, expected {want_status}",
                case.name,
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
