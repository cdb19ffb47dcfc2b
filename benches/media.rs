//! Per-frame cost of the media hot path (issue 3, "Per-frame cost"), on virtual time.
//!
//! Each benchmark handles exactly one 20 ms frame per iteration, in steady state:
//! - `jitter/push+poll`: one caller RTP packet into the [`JitterBuffer`] and the frame that falls
//!   due out of it;
//! - `pacer/push+poll_transmit`: 160 bytes of model audio into the [`PlayoutPacer`] and one RTP
//!   packet out;
//! - `append/160B`: one frame encoded as an `input_audio_buffer.append` event (base64 + JSON) into
//!   a reused `String`;
//! - `inbound/frame`: the whole caller-audio path of one frame: parse the datagram, jitter buffer,
//!   append encoding.
//!
//! Run: `cargo bench --bench media -- --measurement-time 3` (see BENCHMARKS.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use frontdesk::media::g711::{Law, FRAME_BYTES};
use frontdesk::media::jitter::JitterBuffer;
use frontdesk::media::pacer::PlayoutPacer;
use frontdesk::media::rtp::{self, RtpHeaderView};
use frontdesk::realtime::protocol::input_audio_buffer_append;

const FRAME: Duration = Duration::from_millis(20);

fn speech() -> [u8; FRAME_BYTES] {
    let mut frame = [0u8; FRAME_BYTES];
    for (i, b) in frame.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) | 0x11;
    }
    frame
}

fn jitter(c: &mut Criterion) {
    let audio = speech();
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(Law::Mu, 0, t0);
    let mut n: u32 = 0;
    let mut now = t0;
    let mut group = c.benchmark_group("jitter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push+poll", |b| {
        b.iter(|| {
            let packet = RtpHeaderView {
                payload_type: 0,
                sequence: n as u16,
                timestamp: n.wrapping_mul(160),
                ssrc: 0x1234,
                marker: false,
                payload: &audio,
            };
            black_box(jb.push(now, black_box(&packet)));
            while let Some(frame) = jb.poll_frame(now) {
                black_box(&frame);
            }
            n = n.wrapping_add(1);
            now += FRAME;
        })
    });
    group.finish();
}

fn pacer(c: &mut Criterion) {
    let audio = speech();
    let t0 = Instant::now();
    let mut pacer = PlayoutPacer::new(Law::Mu, 0, 0xABCD, 1, 1, t0);
    let mut now = t0;
    let mut group = c.benchmark_group("pacer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push+poll_transmit", |b| {
        b.iter(|| {
            black_box(pacer.push(now, 1, black_box(&audio)));
            while let Some(t) = pacer.poll_transmit(now) {
                black_box(&t);
            }
            now += FRAME;
        })
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let audio = speech();
    let mut out = String::new();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(FRAME_BYTES as u64));
    group.bench_function("160B", |b| {
        b.iter(|| {
            input_audio_buffer_append(&mut out, black_box(&audio));
            black_box(out.len());
        })
    });
    group.finish();
}

fn inbound(c: &mut Criterion) {
    let audio = speech();
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(Law::Mu, 0, t0);
    let mut datagram = Vec::with_capacity(rtp::HEADER_BYTES + FRAME_BYTES);
    let mut event = String::new();
    let mut n: u32 = 0;
    let mut now = t0;
    let mut group = c.benchmark_group("inbound");
    group.throughput(Throughput::Elements(1));
    group.bench_function("frame", |b| {
        b.iter(|| {
            rtp::write_packet(
                &mut datagram,
                0,
                false,
                n as u16,
                n.wrapping_mul(160),
                0x1234,
                &audio,
            );
            if let Ok(packet) = rtp::parse(black_box(&datagram)) {
                black_box(jb.push(now, &packet));
            }
            while let Some(frame) = jb.poll_frame(now) {
                input_audio_buffer_append(&mut event, &frame.audio);
                black_box(event.len());
            }
            n = n.wrapping_add(1);
            now += FRAME;
        })
    });
    group.finish();
}

criterion_group!(benches, jitter, pacer, append, inbound);
criterion_main!(benches);
