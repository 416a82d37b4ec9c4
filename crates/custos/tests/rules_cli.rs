//! `custos rules test`: the documented example passes (exit 0); a wrong expectation fails with
//! exit 1 and a message naming the time and the alerts expected and seen; a file that cannot be
//! run (unknown metric) names the problem.

#![expect(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::path::PathBuf;
use std::process::Command;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/alert-rules-test.yaml")
}

fn run(file: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["rules", "test"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_documented_example_passes_and_wrong_expectations_fail_clearly() {
    let (code, stdout, stderr) = run(&example());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("SUCCESS") && stdout.contains("4 expectations"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example()).unwrap();
    // Expect the drift alert to fire one evaluation before its `for` has passed.
    let wrong = text.replace("  - at: 8m\n", "  - at: 7m\n");
    assert_ne!(wrong, text);
    let path = dir.path().join("wrong.yaml");
    std::fs::write(&path, wrong).unwrap();
    let (code, _, stderr) = run(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "at 7m: expected firing: amount-drift{feature=amount}, volume-drop; \
             got firing: volume-drop"
        ),
        "{stderr}"
    );

    let bad = text.replace(
        "metric: volume.rows\n    condition",
        "metric: volume.bytes\n    condition",
    );
    assert_ne!(bad, text);
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let (code, _, stderr) = run(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unknown metric 'volume.bytes'"), "{stderr}");
}
