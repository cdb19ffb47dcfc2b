//! `book_appointment` under 50 concurrent callers, on SQLite and on PostgreSQL (issue 13).
//!
//! ```sh
//! cargo bench --bench booking            # both backends (PostgreSQL: a throwaway server)
//! cargo bench --bench booking -- 10      # 10 race rounds instead of 20
//! ```
//!
//! Each round runs 50 tool calls at once through `frontdesk::tools::call` (JSON arguments in, the
//! `function_call_output` text out, including the calendar load, the rule checks, the booking
//! transaction and the `tool_calls` log row), each caller with its own Call-ID:
//! * `race`: all 50 want the same slot (Dr. Weber's whitening, one provider): 1 booking and 49
//!   `slot_taken` answers with alternatives per round, a new day every round;
//! * `spread`: the 50 want 50 different slots (different days; 2 rounds).
//!
//! Prints, per backend and mode, the calls per second over the whole run and the latency of one
//! call (p50, p99, max). SQLite: a WAL file in a temp dir, the default pool (4 connections).
//! PostgreSQL: the default pool (10 connections), fsync off (`store::testing`), unix socket.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, NaiveDateTime, Weekday};
use frontdesk::calendar::FixedClock;
use frontdesk::store::{DbTarget, Store};
use frontdesk::tools::{self, ToolContext};

const CALLERS: usize = 50;

fn weekdays_from(first: NaiveDate, n: usize) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut d = first;
    while out.len() < n {
        if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            out.push(d);
        }
        d += chrono::Duration::days(1);
    }
    out
}

struct Run {
    latencies: Vec<Duration>,
    total: Duration,
    ok: usize,
    taken: usize,
    other: usize,
}

async fn round(base: &ToolContext, round: usize, slots: &[(NaiveDate, &str)], run: &mut Run) {
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let ctx = ToolContext {
            call_id: format!("bench-{round}-{i}@bench"),
            caller_number: Some(format!("+49170{round:03}{i:04}")),
            ..base.clone()
        };
        let (day, time) = slots[i % slots.len()];
        let args = serde_json::json!({
            "service": "whitening",
            "start": format!("{day}T{time}"),
            "customer_name": format!("Caller {i}"),
        })
        .to_string();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let out = tools::call(&ctx, "book_appointment", &args).await;
            (t.elapsed(), out)
        }));
    }
    for t in tasks {
        let Ok((elapsed, out)) = t.await else {
            run.other += 1;
            continue;
        };
        run.latencies.push(elapsed);
        match out.error.as_deref() {
            None => run.ok += 1,
            Some(e) if e.starts_with("slot_taken") => run.taken += 1,
            Some(_) => run.other += 1,
        }
    }
}

async fn bench(name: &str, mode: &str, target: DbTarget, rounds: usize) {
    let store = match Store::open(&target).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: cannot open {target}: {e}");
            return;
        }
    };
    let cal = frontdesk::calendar_file::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/calendar.example.toml"),
    )
    .expect("example calendar");
    let now = NaiveDateTime::parse_from_str("2026-03-02T08:00", "%Y-%m-%dT%H:%M")
        .expect("time")
        .and_utc();
    frontdesk::store::calendar::import(&store, &cal, now)
        .await
        .expect("import");
    let base = ToolContext {
        clock: Arc::new(FixedClock::new(now)),
        timeout: Duration::from_secs(30),
        ..ToolContext::new(store.clone(), "bench", None, "bright-smile")
    };
    // Whitening is 90 min + 15 min buffer: Dr. Weber has two such slots a weekday (08:00, 10:00).
    let days = weekdays_from(NaiveDate::from_ymd_opt(2026, 3, 3).expect("date"), 60);
    let mut run = Run {
        latencies: Vec::new(),
        total: Duration::ZERO,
        ok: 0,
        taken: 0,
        other: 0,
    };
    let started = Instant::now();
    for r in 0..rounds {
        let slots: Vec<(NaiveDate, &str)> = match mode {
            // One new slot per round, wanted by all 50.
            "race" => vec![(days[(r / 2) % days.len()], ["08:00", "10:00"][r % 2])],
            // 50 different slots per round.
            _ => (0..CALLERS)
                .map(|i| (days[i % days.len()], ["08:00", "10:00"][r % 2]))
                .collect(),
        };
        round(&base, r, &slots, &mut run).await;
    }
    run.total = started.elapsed();
    run.latencies.sort();
    let n = run.latencies.len();
    let pct = |p: f64| run.latencies[((n as f64 * p).ceil() as usize).clamp(1, n) - 1];
    println!(
        "{name:>8} {mode:>6}: {n:>5} calls in {:>6.2} s = {:>6.1} calls/s; latency p50 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms; booked {}, slot_taken {}, other {}",
        run.total.as_secs_f64(),
        n as f64 / run.total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        run.latencies[n - 1].as_secs_f64() * 1e3,
        run.ok,
        run.taken,
        run.other
    );
    store.close().await;
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("frontdesk-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pg = frontdesk::store::testing::pg_server();
        if pg.is_none() {
            eprintln!("postgres: skipped (no PostgreSQL binaries)");
        }
        for (mode, rounds) in [("race", rounds), ("spread", 2)] {
            let file = DbTarget::from(dir.join(format!("{mode}.db")));
            bench("sqlite", mode, file, rounds).await;
            if let Some(pg) = pg {
                match pg.create_database() {
                    Ok(target) => bench("postgres", mode, target, rounds).await,
                    Err(e) => eprintln!("postgres: {e}"),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
