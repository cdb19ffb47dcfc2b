//! Shell: live reload of the dialplan directory.
//!
//! ```text
//!  file change (notify, debounced) ─┐
//!                                   ├─► load_dir ─► valid:   swap the plan in, log the new version
//!  SIGHUP ──────────────────────────┘               invalid: keep the old plan, log every error
//! ```
//!
//! [`DialplanHandle`] holds the current plan behind an `Arc`. A call task clones the `Arc` once,
//! when the call arrives (`handle.current()`), and keeps it: a reload during the call does not
//! change the plan (or the agent profile) that call uses, and the next call gets the new one.
//! The swap is a pointer store under a lock that is held only for that store or one clone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Dialplan, Error};

/// Quiet time after the last file event before the directory is reloaded (editors write a file
/// in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest a reload waits for the file events to stop.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// Pending "something changed" notices from the watcher thread. One is enough: any number of
/// events lead to one reload. The watcher thread never blocks: when the notice is already
/// pending, further events are dropped.
const CHANGE_QUEUE_CAPACITY: usize = 1;

/// The current dialplan, shared by the server and the reload task. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct DialplanHandle {
    current: Arc<RwLock<Arc<Dialplan>>>,
    /// The configured model endpoint names a reloaded plan's agents may use; `None`: unchecked.
    endpoints: Option<Arc<[String]>>,
}

impl DialplanHandle {
    /// A handle serving `plan`.
    pub fn new(plan: Dialplan) -> DialplanHandle {
        DialplanHandle {
            current: Arc::new(RwLock::new(Arc::new(plan))),
            endpoints: None,
        }
    }

    /// A handle serving `plan` whose reloads are also checked against the configured model
    /// endpoint names (see [`Dialplan::check_endpoints`]).
    pub fn with_endpoints(plan: Dialplan, endpoints: Vec<String>) -> DialplanHandle {
        DialplanHandle {
            endpoints: Some(endpoints.into()),
            ..DialplanHandle::new(plan)
        }
    }

    /// The plan to use for a new call; keep this `Arc` for the whole call.
    pub fn current(&self) -> Arc<Dialplan> {
        // A poisoned lock still holds a valid Arc: the writer only stores a pointer.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Atomically replaces the plan; returns the previous one.
    pub fn replace(&self, plan: Dialplan) -> Arc<Dialplan> {
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *slot, Arc::new(plan))
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadOutcome {
    /// The new plan is in service.
    Swapped {
        /// Version of the plan replaced.
        from: String,
        /// Version now in service.
        to: String,
    },
    /// The files compile to the plan already in service (same version).
    Unchanged {
        /// Version in service.
        version: String,
    },
    /// The files have errors; the old plan stays in service.
    Rejected {
        /// Version still in service.
        kept: String,
        /// Every error found.
        errors: Vec<Error>,
    },
}

/// Loads `dir` and swaps the plan in when it is valid and different. Blocking (reads files).
pub fn reload(dir: &Path, handle: &DialplanHandle) -> ReloadOutcome {
    let current = handle.current();
    let loaded = Dialplan::load_dir(dir).and_then(|plan| {
        let errors = handle
            .endpoints
            .as_ref()
            .map(|known| plan.check_endpoints(known))
            .unwrap_or_default();
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    });
    match loaded {
        Ok(plan) if plan.version() == current.version() => ReloadOutcome::Unchanged {
            version: plan.version().to_owned(),
        },
        Ok(plan) => {
            let to = plan.version().to_owned();
            let old = handle.replace(plan);
            ReloadOutcome::Swapped {
                from: old.version().to_owned(),
                to,
            }
        }
        Err(errors) => ReloadOutcome::Rejected {
            kept: current.version().to_owned(),
            errors,
        },
    }
}

/// Watches `dir` (recursively, plus the directories of files the plan refers to outside it) and
/// listens for SIGHUP; reloads on either until `shutdown` is cancelled. Every swap is logged with
/// the new version and the plan's warnings; every rejected reload with all its errors (once per
/// distinct set of errors). If the file watcher cannot start, SIGHUP still works.
pub async fn watch(dir: PathBuf, handle: DialplanHandle, shutdown: CancellationToken) {
    run(dir, handle, shutdown, true).await;
}

/// [`watch`], with the file watcher optional (tests of SIGHUP alone).
pub(crate) async fn run(
    dir: PathBuf,
    handle: DialplanHandle,
    shutdown: CancellationToken,
    files: bool,
) {
    let (tx, mut rx) = mpsc::channel::<()>(CHANGE_QUEUE_CAPACITY);
    let mut watcher = if files {
        start_watcher(&dir, tx.clone())
    } else {
        None
    };
    let mut watched_outside: BTreeSet<PathBuf> = BTreeSet::new();
    if let Some(w) = watcher.as_mut() {
        watch_dependencies(w, &dir, &handle.current(), &mut watched_outside);
    }
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; dialplan reload on SIGHUP is off");
            None
        }
    };
    info!(
        dir = %dir.display(),
        version = handle.current().version(),
        file_watch = watcher.is_some(),
        "dialplan live reload is on (file changes and SIGHUP)"
    );
    let mut last_rejected: Option<Vec<Error>> = None;
    loop {
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = rx.recv() => {
                if !debounce(&mut rx, &shutdown).await {
                    break;
                }
                "file change"
            }
            Some(()) = next_hup(&mut hup) => "SIGHUP",
        };
        let (d, h) = (dir.clone(), handle.clone());
        let outcome = match tokio::task::spawn_blocking(move || reload(&d, &h)).await {
            Ok(o) => o,
            Err(e) => {
                error!(error = %e, "dialplan reload task failed; keeping the current plan");
                continue;
            }
        };
        log_outcome(trigger, &outcome, &handle, &mut last_rejected);
        if let (Some(w), ReloadOutcome::Swapped { .. }) = (watcher.as_mut(), &outcome) {
            watch_dependencies(w, &dir, &handle.current(), &mut watched_outside);
        }
    }
    debug!("dialplan watcher stopped");
}

async fn next_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until no file event came for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]); false on shutdown.
async fn debounce(rx: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> bool {
    let start = Instant::now();
    let mut deadline = start + DEBOUNCE;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(deadline) => return true,
            Some(()) = rx.recv() => deadline = (Instant::now() + DEBOUNCE).min(start + MAX_DEBOUNCE),
        }
    }
}

fn log_outcome(
    trigger: &str,
    outcome: &ReloadOutcome,
    handle: &DialplanHandle,
    last_rejected: &mut Option<Vec<Error>>,
) {
    match outcome {
        ReloadOutcome::Swapped { from, to } => {
            *last_rejected = None;
            let plan = handle.current();
            for w in plan.warnings() {
                warn!("dialplan warning: {w}");
            }
            info!(trigger, version = %to, previous = %from, routes = plan.routes().len(), "dialplan reloaded; new calls use this version");
        }
        ReloadOutcome::Unchanged { version } => {
            *last_rejected = None;
            debug!(trigger, %version, "dialplan unchanged");
        }
        ReloadOutcome::Rejected { kept, errors } => {
            if last_rejected.as_ref() == Some(errors) {
                debug!(trigger, "dialplan still has the same errors");
                return;
            }
            for e in errors {
                error!("dialplan: {e}");
            }
            warn!(
                trigger,
                errors = errors.len(),
                version = %kept,
                "the changed dialplan has errors; still serving the previous version"
            );
            *last_rejected = Some(errors.clone());
        }
    }
}

/// Whether a file event may change the plan: not reads, not hidden or backup files.
fn relevant(event: &notify::Event) -> bool {
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    let scratch = |p: &PathBuf| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with('.')
                || n.ends_with('~')
                || n.ends_with(".swp")
                || n.ends_with(".swx")
                || n.ends_with(".tmp")
        })
    };
    kind_matters && (event.paths.is_empty() || !event.paths.iter().all(scratch))
}

fn start_watcher(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) if relevant(&event) => {
            let _ = tx.try_send(());
        }
        Ok(_) => {}
        Err(e) => {
            warn!(error = %e, "dialplan file watcher error; reloading to be safe");
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot start the dialplan file watcher; reload with SIGHUP");
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
        warn!(dir = %dir.display(), error = %e, "cannot watch the dialplan directory; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

/// Also watches the directories of referenced files that live outside `dir`.
fn watch_dependencies(
    w: &mut notify::RecommendedWatcher,
    dir: &Path,
    plan: &Dialplan,
    watched: &mut BTreeSet<PathBuf>,
) {
    for dep in plan.dependencies() {
        let Some(parent) = dep.parent() else { continue };
        if parent.starts_with(dir) || watched.contains(parent) {
            continue;
        }
        match w.watch(parent, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(parent.to_owned());
            }
            Err(e) => {
                warn!(dir = %parent.display(), error = %e, "cannot watch a directory the dialplan refers to")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialplan::{Action, CallInfo};
    use chrono::{TimeZone, Utc};

    fn plan_text(voice: &str) -> String {
        format!("[[routes]]\nto = \"*\"\nagent = \"rec\"\n[agents.rec]\ninstructions = \"x\"\nvoice = \"{voice}\"\n")
    }

    fn voice_of(plan: &Dialplan) -> String {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        match plan
            .evaluate(&CallInfo::new(Some("1"), None), now)
            .map(|d| d.action)
        {
            Some(Action::Agent(a)) => a.voice.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn valid_edits_swap_invalid_edits_keep_the_old_plan() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("main.toml");
        std::fs::write(&file, plan_text("alloy")).unwrap();
        let handle = DialplanHandle::new(Dialplan::load_dir(dir.path()).unwrap());
        let in_call = handle.current(); // a call in progress holds its plan
        let v1 = in_call.version().to_owned();
        assert_eq!(
            reload(dir.path(), &handle),
            ReloadOutcome::Unchanged {
                version: v1.clone()
            }
        );

        std::fs::write(&file, plan_text("coral")).unwrap();
        let ReloadOutcome::Swapped { from, to } = reload(dir.path(), &handle) else {
            panic!("expected a swap")
        };
        assert_eq!(from, v1);
        assert_ne!(to, v1);
        assert_eq!(handle.current().version(), to);
        assert_eq!(
            voice_of(&handle.current()),
            "coral",
            "the next call uses the new plan"
        );
        assert_eq!(
            voice_of(&in_call),
            "alloy",
            "the call in progress keeps its plan"
        );

        std::fs::write(
            &file,
            plan_text("coral").replace("instructions", "instructons"),
        )
        .unwrap();
        match reload(dir.path(), &handle) {
            ReloadOutcome::Rejected { kept, errors } => {
                assert_eq!(kept, to);
                assert!(
                    errors.iter().any(|e| e.message.contains("instructons")),
                    "{errors:?}"
                );
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(
            handle.current().version(),
            to,
            "the old plan stays in service"
        );
    }

    async fn wait_for_version(handle: &DialplanHandle, not: &str) -> String {
        for _ in 0..200 {
            let v = handle.current().version().to_owned();
            if v != not {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the plan was not reloaded within 10 s");
    }

    #[tokio::test]
    async fn file_changes_are_picked_up_and_bad_edits_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("main.toml");
        std::fs::write(&file, plan_text("alloy")).unwrap();
        let handle = DialplanHandle::new(Dialplan::load_dir(dir.path()).unwrap());
        let v1 = handle.current().version().to_owned();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch(
            dir.path().to_owned(),
            handle.clone(),
            shutdown.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await; // let the watcher start

        std::fs::write(&file, plan_text("coral")).unwrap();
        let v2 = wait_for_version(&handle, &v1).await;
        assert_eq!(voice_of(&handle.current()), "coral");

        // A bad edit: nothing changes, even well after the debounce.
        std::fs::write(&file, "[[routes]\n").unwrap();
        tokio::time::sleep(DEBOUNCE * 4).await;
        assert_eq!(handle.current().version(), v2);

        // Fixing it is picked up again; a new file in the directory too.
        std::fs::write(&file, plan_text("sage")).unwrap();
        let v3 = wait_for_version(&handle, &v2).await;
        assert_eq!(voice_of(&handle.current()), "sage");
        std::fs::write(
            dir.path().join("00-first.toml"),
            plan_text("ash").replace("rec", "first"),
        )
        .unwrap();
        wait_for_version(&handle, &v3).await;
        assert_eq!(voice_of(&handle.current()), "ash");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn sighup_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("main.toml");
        std::fs::write(&file, plan_text("alloy")).unwrap();
        let handle = DialplanHandle::new(Dialplan::load_dir(dir.path()).unwrap());
        let v1 = handle.current().version().to_owned();
        // Register a SIGHUP handler first, so that the signal below can never hit the default
        // action (terminate) even if the task has not registered its own yet.
        let _guard =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            dir.path().to_owned(),
            handle.clone(),
            shutdown.clone(),
            false,
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;

        std::fs::write(&file, plan_text("verse")).unwrap();
        tokio::time::sleep(DEBOUNCE * 3).await;
        assert_eq!(
            handle.current().version(),
            v1,
            "no file watcher in this test"
        );
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -HUP {}", std::process::id())])
            .status()
            .unwrap();
        assert!(status.success());
        wait_for_version(&handle, &v1).await;
        assert_eq!(voice_of(&handle.current()), "verse");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn reads_and_scratch_files_are_not_changes() {
        let ev = |kind, path: &str| notify::Event {
            kind,
            paths: vec![PathBuf::from(path)],
            attrs: Default::default(),
        };
        assert!(!relevant(&ev(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "d/main.toml"
        )));
        assert!(relevant(&ev(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "d/main.toml"
        )));
        assert!(relevant(&ev(
            EventKind::Modify(notify::event::ModifyKind::Any),
            "d/prompts/rec.md"
        )));
        assert!(!relevant(&ev(
            EventKind::Modify(notify::event::ModifyKind::Any),
            "d/.main.toml.swp"
        )));
        assert!(!relevant(&ev(
            EventKind::Create(notify::event::CreateKind::File),
            "d/main.toml~"
        )));
    }
}
