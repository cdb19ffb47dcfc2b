//! Statistics of one call's core: fixed-bucket [`LatencyHistogram`]s (added latency of caller
//! frames, pacing error of our RTP) and the counters of [`BridgeStats`]. No I/O.

use std::time::Duration;

use crate::media::jitter::JitterStats;
use crate::media::pacer::PacerStats;
use crate::media::rtcp::RemoteReport;

/// Width of the fine buckets of a [`LatencyHistogram`]: 0.05 ms.
pub const HISTOGRAM_FINE_NS: u64 = 50_000;
/// Upper end of the fine buckets: 10 ms.
pub const HISTOGRAM_FINE_LIMIT_NS: u64 = 10_000_000;
/// Width of the coarse buckets, from 10 ms on: 0.5 ms.
pub const HISTOGRAM_COARSE_NS: u64 = 500_000;
/// Upper end of the coarse buckets: 500 ms. Longer samples go to one overflow bucket.
pub const HISTOGRAM_LIMIT_NS: u64 = 500_000_000;
const FINE_BUCKETS: usize = (HISTOGRAM_FINE_LIMIT_NS / HISTOGRAM_FINE_NS) as usize;
const COARSE_BUCKETS: usize =
    ((HISTOGRAM_LIMIT_NS - HISTOGRAM_FINE_LIMIT_NS) / HISTOGRAM_COARSE_NS) as usize;
/// Buckets of a [`LatencyHistogram`]: 200 fine + 980 coarse + 1 overflow (4.7 KB of `u32`).
const HISTOGRAM_BUCKETS: usize = FINE_BUCKETS + COARSE_BUCKETS + 1;

/// A histogram of durations with fixed buckets: 0.05 ms wide below 10 ms (where pacing errors and
/// processing times live), 0.5 ms wide from 10 to 500 ms (jitter-buffer delays), and one overflow
/// bucket above. The buckets are allocated once by [`LatencyHistogram::new`]; [`record`] only
/// increments a counter. Percentiles are nearest-rank, reported as the upper edge of the bucket
/// that holds them (capped at the largest sample), so they overstate the true value by less than
/// one bucket width; a percentile in the overflow bucket is the largest sample.
///
/// [`record`]: LatencyHistogram::record
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Box<[u32]>,
    count: u64,
    max_ns: u64,
}

/// Percentiles of a [`LatencyHistogram`], in milliseconds (all 0 without samples).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Samples recorded.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample (exact).
    pub max_ms: f64,
}

impl LatencyHistogram {
    /// An empty histogram; allocates its buckets.
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            buckets: vec![0; HISTOGRAM_BUCKETS].into_boxed_slice(),
            count: 0,
            max_ns: 0,
        }
    }

    /// Adds one sample. Never allocates.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bucket_index(ns);
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0 < q ≤ 1, nearest rank), as an upper bound within one bucket width;
    /// `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        // Nearest rank: the ceil(q·n)-th smallest sample, at least the first (the epsilon keeps
        // 0.07 × 100 = 7.000000000000001 at rank 7).
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64 - 1e-9).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                let edge = bucket_upper_ns(i).min(self.max_ns);
                return Some(Duration::from_nanos(edge));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    /// Median, 99th percentile and maximum, in ms.
    pub fn percentiles(&self) -> Percentiles {
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1_000.0);
        Percentiles {
            samples: self.count,
            p50_ms: ms(self.quantile(0.50)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: self.max_ns as f64 / 1e6,
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

fn bucket_index(ns: u64) -> usize {
    if ns < HISTOGRAM_FINE_LIMIT_NS {
        (ns / HISTOGRAM_FINE_NS) as usize
    } else if ns < HISTOGRAM_LIMIT_NS {
        FINE_BUCKETS + ((ns - HISTOGRAM_FINE_LIMIT_NS) / HISTOGRAM_COARSE_NS) as usize
    } else {
        HISTOGRAM_BUCKETS - 1
    }
}

/// Exclusive upper edge of bucket `i` in ns (`u64::MAX` for the overflow bucket).
fn bucket_upper_ns(i: usize) -> u64 {
    if i < FINE_BUCKETS {
        (i as u64 + 1) * HISTOGRAM_FINE_NS
    } else if i < HISTOGRAM_BUCKETS - 1 {
        HISTOGRAM_FINE_LIMIT_NS + ((i - FINE_BUCKETS) as u64 + 1) * HISTOGRAM_COARSE_NS
    } else {
        u64::MAX
    }
}

/// Counters of one call, for the call record and the summary log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeStats {
    /// Caller RTP.
    pub inbound: JitterStats,
    /// Our RTP.
    pub outbound: PacerStats,
    /// `input_audio_buffer.append` events sent.
    pub appends: u64,
    /// Times the caller interrupted the agent.
    pub barge_ins: u64,
    /// Caller frames the echo gate replaced with silence while the agent spoke.
    pub echo_gated_frames: u64,
    /// `speech_started` events during agent audio that the echo estimate explains (our own
    /// voice returned by the line; with the gate on, at most what slipped through while it learned).
    pub false_barge_ins: u64,
    /// `speech_started` events during agent audio with the caller's own voice in the last 640 ms.
    pub true_barge_ins: u64,
    /// `conversation.item.truncate` events sent.
    pub truncates: u64,
    /// `error` events received.
    pub server_errors: u64,
    /// Audio deltas discarded because their item had been interrupted.
    pub late_deltas_dropped: u64,
    /// Key presses received (RFC 4733 or SIP INFO).
    pub dtmf_digits: u64,
    /// What the caller last reported about our stream in RTCP, if anything.
    pub remote_report: Option<RemoteReport>,
    /// Added latency of caller frames: packet arrival → `append` written to the WebSocket
    /// ([`Bridge::ws_written`]; the
    /// relay's wait for a gap or the rest of a frame, plus processing); concealed frames are not counted.
    pub latency: Percentiles,
    /// Pacing error of our RTP: the time a packet was handed out by [`Bridge::poll_rtp`] minus its
    /// scheduled [`Transmit::due`] (how late the shell woke up).
    pub pacing: Percentiles,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_nearest_rank_bucket_upper_edges() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.percentiles(), Percentiles::default());
        // 1..=100 × 0.1 ms: p50 is the 50th sample (5.0 ms), p99 the 99th (9.9 ms).
        for i in 1..=100u64 {
            h.record(Duration::from_micros(100 * i));
        }
        let p = h.percentiles();
        assert_eq!(p.samples, 100);
        // 5.0 ms falls in the fine bucket [5.00, 5.05): reported as its upper edge.
        assert!((p.p50_ms - 5.05).abs() < 1e-9, "{p:?}");
        assert!((p.p99_ms - 9.95).abs() < 1e-9, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 1e-9, "{p:?}");
        // The 100th sample (10.0 ms) is the first coarse bucket, capped at the largest sample.
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(10)));
        assert_eq!(h.quantile(0.07), Some(Duration::from_micros(750)));
    }

    #[test]
    fn histogram_bucket_edges_and_overflow() {
        // Fine buckets of 0.05 ms below 10 ms, coarse of 0.5 ms up to 500 ms, then overflow.
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(49_999), 0);
        assert_eq!(bucket_index(50_000), 1);
        assert_eq!(bucket_index(9_999_999), FINE_BUCKETS - 1);
        assert_eq!(bucket_index(10_000_000), FINE_BUCKETS);
        assert_eq!(bucket_index(10_499_999), FINE_BUCKETS);
        assert_eq!(bucket_index(499_999_999), HISTOGRAM_BUCKETS - 2);
        assert_eq!(bucket_index(500_000_000), HISTOGRAM_BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), HISTOGRAM_BUCKETS - 1);
        for i in 0..HISTOGRAM_BUCKETS - 1 {
            let upper = bucket_upper_ns(i);
            assert_eq!(bucket_index(upper - 1), i, "bucket {i}");
            assert_eq!(bucket_index(upper), i + 1, "bucket {i}");
        }

        let mut h = LatencyHistogram::new();
        for _ in 0..98 {
            h.record(Duration::from_millis(30));
        }
        h.record(Duration::from_millis(700));
        h.record(Duration::from_secs(3));
        let p = h.percentiles();
        assert!((p.p50_ms - 30.5).abs() < 1e-9, "{p:?}");
        // The 99th sample is in the overflow bucket: reported as the largest sample.
        assert!((p.p99_ms - 3_000.0).abs() < 1e-9, "{p:?}");
        assert!((p.max_ms - 3_000.0).abs() < 1e-9, "{p:?}");
        // Counts saturate instead of wrapping.
        let mut h = LatencyHistogram::new();
        h.buckets[0] = u32::MAX;
        h.record(Duration::ZERO);
        assert_eq!(h.buckets[0], u32::MAX);
    }
}
