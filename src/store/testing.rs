//! Test support: a throwaway PostgreSQL server, so the store's tests and the multi-instance
//! end-to-end tests run against a real PostgreSQL without any set-up (issue 13).
//!
//! [`pg_server`] starts one server per test process on first use: `initdb` into a fresh
//! directory under the temp dir, `pg_ctl start` listening only on a unix socket inside that
//! directory (no TCP port, so parallel test processes never collide), `fsync` off. Each test
//! takes its own database with [`PgServer::create_database`]. A detached watcher process stops
//! the server and deletes the directory once the test process has exited, however it exits.
//!
//! Binaries: `$FRONTDESK_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` (Debian's
//! `postgresql` package), else `initdb` on `PATH`. `initdb` and `pg_ctl` refuse to run as root;
//! as root they run as the `postgres` user through `runuser`.
//!
//! Without PostgreSQL binaries [`pg_server`] returns `None` and callers skip their PostgreSQL
//! half, unless `FRONTDESK_REQUIRE_PG=1` is set (CI sets it in `tests/run.sh`): then it panics,
//! so a missing server fails the run instead of silently testing less.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::DbTarget;

/// The socket port number (only names the socket file; nothing listens on TCP).
const PORT: u16 = 5432;
/// Database superuser created by `initdb`.
const SUPERUSER: &str = "postgres";
/// Longest wait for the server to start or stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running throwaway PostgreSQL server.
#[derive(Debug)]
pub struct PgServer {
    /// Root directory (data, socket, log).
    dir: PathBuf,
    /// `bin` directory of the PostgreSQL installation.
    bin: PathBuf,
    /// OS user the server runs as when we are root.
    run_as: Option<&'static str>,
    next_db: AtomicU32,
}

/// The process's test server, started on first use; `None` when PostgreSQL is not installed.
///
/// # Panics
/// When PostgreSQL cannot be started and `FRONTDESK_REQUIRE_PG` is set.
pub fn pg_server() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    let server = SERVER.get_or_init(|| match PgServer::start() {
        Ok(s) => Some(s),
        Err(e) => {
            if required() {
                panic!("FRONTDESK_REQUIRE_PG is set but no PostgreSQL test server: {e}");
            }
            eprintln!("PostgreSQL tests skipped: {e}");
            None
        }
    });
    server.as_ref()
}

/// Whether PostgreSQL tests must run (`FRONTDESK_REQUIRE_PG` set and not `0`).
pub fn required() -> bool {
    std::env::var("FRONTDESK_REQUIRE_PG").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("FRONTDESK_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        })
        .ok_or_else(|| "no initdb found (install the Debian package `postgresql`)".to_owned())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl PgServer {
    /// Starts a server of its own (for a test that stops and restarts it; other tests share
    /// [`pg_server`]). It is stopped and deleted when the process exits.
    ///
    /// # Errors
    /// Why PostgreSQL could not be started (no binaries, `initdb` or `pg_ctl` failed).
    pub fn start() -> Result<PgServer, String> {
        let bin = find_bin()?;
        let run_as = is_root().then_some("postgres");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("frontdesk-pg-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let server = PgServer {
            dir,
            bin,
            run_as,
            next_db: AtomicU32::new(0),
        };
        server.watch()?;
        if let Some(user) = run_as {
            run(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(&server.dir),
                "chown",
            )?;
        }
        let data = server.data();
        server.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a PostgreSQL binary, as the `postgres` user when we are root.
    fn run_pg(&self, name: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(name);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(&self.dir);
        run(&mut cmd, name)
    }

    /// Deletes the directory (after stopping the server) once this process has exited.
    fn watch(&self) -> Result<(), String> {
        let dir = path_str(&self.dir)?.to_owned();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             pidfile='{dir}/data/postmaster.pid'; \
             if [ -f \"$pidfile\" ]; then kill -INT \"$(head -n1 \"$pidfile\")\" 2>/dev/null; fi; \
             i=0; while [ -f \"$pidfile\" ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done; \
             if [ -f \"$pidfile\" ]; then kill -KILL \"$(head -n1 \"$pidfile\")\" 2>/dev/null; fi; \
             rm -rf '{dir}'",
            pid = std::process::id()
        );
        Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the clean-up watcher: {e}"))
    }

    /// (Re)starts the server and waits until it accepts connections.
    ///
    /// # Errors
    /// The `pg_ctl` output when it does not start.
    pub fn start_again(&self) -> Result<(), String> {
        let data = self.data();
        let opts = format!(
            "-k {} -c listen_addresses='' -p {PORT} -F -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            path_str(&self.dir)?
        );
        let log = self.dir.join("server.log");
        let timeout = START_TIMEOUT.as_secs().to_string();
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &opts,
                "-w",
                "-t",
                &timeout,
                "start",
            ],
        )
        .map(drop)
    }

    /// Stops the server (`pg_ctl stop -m fast`: open connections are cut) and waits for it.
    ///
    /// # Errors
    /// The `pg_ctl` output when it does not stop.
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data();
        let timeout = START_TIMEOUT.as_secs().to_string();
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-m",
                "fast",
                "-w",
                "-t",
                &timeout,
                "stop",
            ],
        )
        .map(drop)
    }

    /// The connection URL of database `name` (unix socket in the server's directory).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{name}?host={}&port={PORT}",
            self.dir.display()
        )
    }

    /// Creates a fresh, empty database and returns its target (migrations are applied by
    /// `Store::open`).
    ///
    /// # Errors
    /// The `createdb` output when it fails.
    pub fn create_database(&self) -> Result<DbTarget, String> {
        let name = format!("fd_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let deadline = Instant::now() + START_TIMEOUT;
        let socket = path_str(&self.dir)?;
        let port = PORT.to_string();
        loop {
            let created = run(
                Command::new(self.bin.join("createdb"))
                    .args(["-h", socket, "-p", &port, "-U", SUPERUSER, &name]),
                "createdb",
            );
            match created {
                Ok(_) => break,
                // The server may still be coming up after a restart.
                Err(e) if Instant::now() < deadline && e.contains("connect") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
        DbTarget::parse(&self.url(&name), None).map_err(|e| e.to_string())
    }
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("temp path {} is not UTF-8", p.display()))
}
