//! Golden tests: each directory of `tests/dialplan_golden/` is a dialplan (its `*.toml` files, or
//! a `plan-dir` file naming another directory relative to the case) with the expected output:
//!
//! - `check.out`: what `frontdesk dialplan check` prints (stdout, then stderr), with the case
//!   directory removed from paths. Every error of an invalid plan, or the routing table.
//! - `calls.txt` (valid plans): one call per line, `to=N [from=N] at=TIME => expected decision`,
//!   where TIME is RFC 3339 or a local `YYYY-MM-DDTHH:MM` in the plan's time zone and the
//!   decision is `route: action` or `no route`. `#` starts a comment line.
//!
//! Run with `GOLDEN_BLESS=1` to rewrite the expected outputs after an intended change, then
//! review the diff.

use std::path::{Path, PathBuf};

use super::report::{check_report, parse_at};
use super::{CallInfo, Dialplan};

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialplan_golden")
}

fn bless() -> bool {
    std::env::var_os("GOLDEN_BLESS").is_some_and(|v| v != "0")
}

/// The dialplan directory of a case.
fn plan_dir(case: &Path) -> PathBuf {
    match std::fs::read_to_string(case.join("plan-dir")) {
        Ok(rel) => case.join(rel.trim()),
        Err(_) => case.to_owned(),
    }
}

/// `check` output with the plan directory removed from paths, so it does not depend on where
/// the repository is.
fn check_output(dir: &Path) -> String {
    let (out, err, valid) = check_report(dir);
    let prefix = format!("{}/", dir.display());
    let text = format!("valid: {valid}\n--- stdout\n{out}--- stderr\n{err}");
    text.replace(&prefix, "")
        .replace(&dir.display().to_string(), ".")
}

/// Evaluates every call line of `calls.txt` and returns the file with the actual decisions.
fn calls_output(plan: &Dialplan, text: &str) -> Result<String, String> {
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let input = trimmed.split("=>").next().unwrap_or("").trim();
        let mut call = CallInfo::default();
        let mut at = None;
        for field in input.split_whitespace() {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("calls.txt:{}: `{field}` is not key=value", n + 1))?;
            let v = (v != "-").then(|| v.to_owned());
            match k {
                "to" => call.called = v,
                "from" => call.caller = v,
                "at" => at = v,
                _ => return Err(format!("calls.txt:{}: unknown field `{k}`", n + 1)),
            }
        }
        let at = at.ok_or_else(|| format!("calls.txt:{}: every call needs at=TIME", n + 1))?;
        let (now, _) =
            parse_at(&at, plan.timezone()).map_err(|e| format!("calls.txt:{}: {e}", n + 1))?;
        let decision = plan
            .evaluate(&call, now)
            .map_or_else(|| "no route".to_owned(), |d| d.to_string());
        out.push_str(&format!("{input} => {decision}\n"));
    }
    Ok(out)
}

fn compare(path: &Path, actual: &str, failures: &mut Vec<String>) {
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected == actual {
        return;
    }
    if bless() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let mut diff = String::new();
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => diff.push_str(&format!(
                "  line {}:\n    expected: {}\n    actual:   {}\n",
                i + 1,
                x.unwrap_or(&"<none>"),
                y.unwrap_or(&"<none>")
            )),
        }
    }
    failures.push(format!(
        "{} differs (GOLDEN_BLESS=1 rewrites it):\n{diff}",
        path.display()
    ));
}

#[test]
fn golden_dialplans() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_root())
        .expect("tests/dialplan_golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "golden cases: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let dir = plan_dir(case);
        compare(&case.join("check.out"), &check_output(&dir), &mut failures);
        if let Ok(calls) = std::fs::read_to_string(case.join("calls.txt")) {
            match Dialplan::load_dir(&dir) {
                Ok(plan) => match calls_output(&plan, &calls) {
                    Ok(actual) => compare(&case.join("calls.txt"), &actual, &mut failures),
                    Err(e) => failures.push(format!("{}: {e}", case.display())),
                },
                Err(errors) => failures.push(format!(
                    "{}: calls.txt needs a valid plan: {errors:?}",
                    case.display()
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shipped_dialplans_compile_without_warnings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans");
    let plan = Dialplan::load_dir(&dir)
        .unwrap_or_else(|e| panic!("shipped dialplans are invalid: {e:#?}"));
    assert!(plan.warnings().is_empty(), "{:#?}", plan.warnings());
    assert!(
        plan.files().len() >= 3,
        "main line, second language line, emergency line"
    );
    // Any other number (the SIP tests call `frontdesk`) reaches an agent at any time.
    for hour in 0..24 {
        let now =
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 25, hour, 0, 0).unwrap();
        for called in [Some("frontdesk"), None] {
            let d = plan
                .evaluate(&CallInfo::new(called, None), now)
                .expect("a route");
            assert!(matches!(d.action, super::Action::Agent(_)), "{d}");
        }
    }
}

/// The core of the dialplan does no I/O: no tokio, no file system, no clock (STYLE.md §1).
#[test]
fn core_modules_do_no_io() {
    let core = [
        ("mod.rs", include_str!("mod.rs")),
        ("raw.rs", include_str!("raw.rs")),
        ("compile.rs", include_str!("compile.rs")),
        ("eval.rs", include_str!("eval.rs")),
        ("matcher.rs", include_str!("matcher.rs")),
        ("schedule.rs", include_str!("schedule.rs")),
        ("profile.rs", include_str!("profile.rs")),
        ("audio.rs", include_str!("audio.rs")),
        ("hint.rs", include_str!("hint.rs")),
    ];
    // Spelled in pieces so that this file does not match itself.
    let forbidden = [
        ["tok", "io::"].concat(),
        ["std::", "fs"].concat(),
        ["Utc::", "now"].concat(),
        ["Local::", "now"].concat(),
        ["Instant::", "now"].concat(),
        ["SystemTime::", "now"].concat(),
        ["std::", "net"].concat(),
    ];
    for (name, text) in core {
        for f in &forbidden {
            assert!(
                !text.contains(f.as_str()),
                "{name} uses `{f}`; I/O belongs in load.rs, report.rs or reload.rs"
            );
        }
    }
}

/// docs/dialplans.md shows the shipped dialplans as they are.
#[test]
fn docs_show_the_shipped_dialplans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/dialplans.md")).expect("docs/dialplans.md");
    let mut shipped: Vec<PathBuf> = std::fs::read_dir(root.join("dialplans"))
        .expect("dialplans/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    shipped.sort();
    for file in shipped {
        let text = std::fs::read_to_string(&file).expect("readable");
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(
            docs.contains(&format!("### `dialplans/{name}`\n\n```toml\n{text}```")),
            "docs/dialplans.md does not show dialplans/{name} as it is; copy it again"
        );
    }
}

/// Every TOML example of docs/dialplans.md uses only keys and types that exist (the examples are
/// fragments, so undefined names and missing files are fine).
#[test]
fn docs_examples_use_valid_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/dialplans.md")).expect("docs/dialplans.md");
    let blocks: Vec<&str> = docs
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() >= 6, "{} toml blocks", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let errors = match Dialplan::compile(&[(
            PathBuf::from(format!("docs-{i}.toml")),
            (*block).to_owned(),
        )]) {
            Ok(_) => continue,
            Err(e) => e,
        };
        let shape: Vec<String> = errors
            .iter()
            .filter(|e| {
                e.message.contains("unknown key")
                    || e.message.contains(" must be ")
                    || e.message.contains("invalid TOML")
                    || e.message.contains("is not a")
            })
            .map(|e| e.to_string())
            .collect();
        assert!(shape.is_empty(), "docs example {i}:\n{block}\n{shape:#?}");
    }
}
