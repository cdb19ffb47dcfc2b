//! Test helper: runs `tests/protocol/validate_events.py` (the openai SDK's pydantic models) on
//! events built or sent by the realtime modules. Test builds only.
//!
//! The interpreter is `FRONTDESK_TEST_PYTHON` (default `python3`); it must have the `openai`
//! package (≥ 3.51 for the `live` dialect). A missing package fails the test, never skips it.

use std::path::Path;
use std::process::Command;

/// Result of one validator run.
#[derive(Debug)]
pub(crate) struct Report {
    /// Exit status: 0 all valid, 1 problems found, 2 usage error, 3 `openai` missing.
    pub(crate) code: Option<i32>,
    /// stdout + stderr.
    pub(crate) text: String,
}

/// Validates `lines` (one JSON event each) as `dialect` (`ga`, `beta`, `live`) events in
/// `direction` (`client`, `server`), with extra validator arguments (`--allow-undeclared …`).
///
/// # Panics
/// When the interpreter cannot be run or lacks the `openai` package (exit status 3).
pub(crate) fn validate(dialect: &str, direction: &str, lines: &[String], extra: &[&str]) -> Report {
    let python = std::env::var("FRONTDESK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protocol/validate_events.py");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{dialect}-{direction}.jsonl"));
    std::fs::write(&file, lines.join("\n") + "\n").expect("write jsonl");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--dialect", dialect, "--direction", direction])
        .args(extra)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}); set FRONTDESK_TEST_PYTHON to a python with `openai`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(3),
        "{python} lacks the `openai` package (>= 3.51): `{python} -m pip install -U openai`, or set \
         FRONTDESK_TEST_PYTHON\n{text}"
    );
    Report {
        code: out.status.code(),
        text,
    }
}
