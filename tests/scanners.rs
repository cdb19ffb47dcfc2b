//! SIP scanners (SIPVicious `svmap` and `svwar`, Debian package `sipvicious`) run against frontdesk
//! configured as in production (admission allow-list plus digest users) and cannot enumerate
//! extensions: every user, known or not, gets the same answer, and no Realtime session is opened.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn scan(tool: &str, args: &[&str]) -> String {
    require_tool(tool, "sipvicious");
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn svwar_finds_no_extensions() {
    let dir = TestDir::new("scanners");
    std::fs::write(
        dir.join("frontdesk.toml"),
        r#"
[admission]
max_calls = 10
[[admission.trunks]]
name = "pbx"
allow = ["10.0.0.0/8"]
[[admission.users]]
name = "alice"
password_env = "FRONTDESK_TEST_ALICE"
"#,
    )
    .expect("write config");
    std::fs::write(
        dir.join("dict.txt"),
        "100\n101\nalice\nbob\nadmin\nfrontdesk\nreception\n",
    )
    .expect("dict");
    let sim = Sim::start(&dir, None);
    let config = dir.join("frontdesk.toml");
    let config = config.to_str().expect("path");
    std::env::set_var("FRONTDESK_TEST_ALICE", "correct horse battery staple");
    let mut serve = Serve::start(
        &dir,
        &Path::new(ROOT).join("dialplans"),
        &["--realtime-url", &sim.url(), "--config", config],
    );
    let port = serve.sip.port().to_string();
    let dict = dir.join("dict.txt");
    let dict = dict.to_str().expect("path");

    // svmap finds a SIP device (that is not a secret) ...
    let local = free_port().to_string();
    let out = scan(
        "svmap",
        &["-b", "127.0.0.1", "-P", &local, "-p", &port, "127.0.0.1"],
    );
    assert!(
        out.contains("frontdesk"),
        "svmap did not see frontdesk:\n{out}"
    );

    // ... but svwar cannot tell which extensions exist, whatever the method.
    for (method, force) in [
        ("REGISTER", false),
        ("OPTIONS", false),
        ("INVITE", false),
        ("INVITE", true),
    ] {
        for source in [["-e", "100-110"], ["-d", dict]] {
            let local = free_port().to_string();
            let mut args = vec![
                "-m",
                method,
                "-b",
                "127.0.0.1",
                "-P",
                &local,
                "-p",
                &port,
                "-t",
                "0.05",
            ];
            if force {
                args.push("--force");
            }
            args.extend_from_slice(&source);
            args.push("127.0.0.1");
            let out = scan("svwar", &args);
            assert!(
                out.contains("found nothing"),
                "svwar -m {method} {source:?} found something:\n{out}"
            );
            assert!(
                !out.contains("| Extension"),
                "svwar listed extensions:\n{out}"
            );
        }
    }
    // No scan opened a Realtime session.
    assert!(
        !read_jsonl(&sim.record)
            .iter()
            .any(|e| e["type"] == "session.update"),
        "a scanner's INVITE opened a model session"
    );
    let status = serve.proc.terminate(std::time::Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()));
}
