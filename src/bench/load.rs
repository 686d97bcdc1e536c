//! Closed-loop load: N workers, each repeating one operation as soon as the
//! previous one answered, for a warm-up and then a measured window; and the
//! figures taken from it (operations per second, latency percentiles).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One operation of one worker; `Err` carries why it failed.
pub type Op =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What a measured window gave.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub ok: usize,
    pub errors: usize,
    /// The first error seen, to show the user.
    pub first_error: Option<String>,
    /// From the end of the warm-up to the last measured answer.
    pub elapsed: Duration,
    /// Of successful operations, sorted.
    pub latencies: Vec<Duration>,
}

impl Sample {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            return 0.0;
        }
        self.ok as f64 / secs
    }

    /// Nearest-rank percentile (`p` in 0..=100), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[index].as_secs_f64() * 1000.0
    }

    /// Adds another window of the same load: counts and measured time add
    /// up, latencies are pooled.
    pub fn absorb(&mut self, other: Sample) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
    }
}

struct WorkerResult {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    last_answer: Option<Instant>,
    latencies: Vec<Duration>,
}

/// Runs one worker per op for `warmup + window`; operations started in the
/// window are measured.
pub async fn run(ops: Vec<Op>, warmup: Duration, window: Duration) -> Sample {
    let start = Instant::now();
    let measured_from = start + warmup;
    let end = measured_from + window;
    let mut tasks = tokio::task::JoinSet::new();
    for op in ops {
        tasks.spawn(async move {
            let mut out = WorkerResult {
                ok: 0,
                errors: 0,
                first_error: None,
                last_answer: None,
                latencies: Vec::new(),
            };
            loop {
                let began = Instant::now();
                if began >= end {
                    return out;
                }
                let result = op().await;
                let answered = Instant::now();
                if began < measured_from {
                    continue;
                }
                out.last_answer = Some(answered);
                match result {
                    Ok(()) => {
                        out.ok += 1;
                        out.latencies.push(answered - began);
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
        });
    }
    let mut sample = Sample::default();
    let mut last = measured_from;
    while let Some(joined) = tasks.join_next().await {
        let w = joined.expect("a load worker panicked");
        sample.ok += w.ok;
        sample.errors += w.errors;
        if sample.first_error.is_none() {
            sample.first_error = w.first_error;
        }
        if let Some(t) = w.last_answer {
            last = last.max(t);
        }
        sample.latencies.extend(w.latencies);
    }
    sample.latencies.sort_unstable();
    sample.elapsed = last - measured_from;
    sample
}

/// Runs `count` operations over the workers (each takes the next one until
/// none is left); returns how long it took and the first error, if any.
pub async fn run_count(ops: Vec<Op>, count: usize) -> (Duration, Option<String>) {
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(count));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for op in ops {
        let left = Arc::clone(&left);
        tasks.spawn(async move {
            let take = || {
                left.fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            };
            while take() {
                if let Err(e) = op().await {
                    return Some(e);
                }
            }
            None
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        if let Some(e) = joined.expect("a load worker panicked") {
            first_error.get_or_insert(e);
        }
    }
    (start.elapsed(), first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sample = Sample {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Sample::default()
        };
        assert_eq!(sample.percentile_ms(50.0), 50.0);
        assert_eq!(sample.percentile_ms(99.0), 99.0);
        assert_eq!(sample.percentile_ms(100.0), 100.0);
        assert!(Sample::default().percentile_ms(50.0).is_nan());
    }

    #[test]
    fn absorbed_windows_pool_counts_time_and_latencies() {
        let mut before = Sample {
            ok: 300,
            elapsed: Duration::from_secs(3),
            latencies: (1..=300).map(|_| Duration::from_millis(1)).collect(),
            ..Sample::default()
        };
        before.absorb(Sample {
            ok: 100,
            errors: 2,
            first_error: Some("refused".into()),
            elapsed: Duration::from_secs(2),
            latencies: (1..=100).map(|_| Duration::from_millis(9)).collect(),
        });
        // 400 in 5 s, not the mean of 100/s and 50/s.
        assert_eq!(before.per_second(), 80.0);
        assert_eq!(before.errors, 2);
        assert_eq!(before.first_error.as_deref(), Some("refused"));
        assert_eq!(before.percentile_ms(75.0), 1.0);
        assert_eq!(before.percentile_ms(76.0), 9.0);
    }
}
