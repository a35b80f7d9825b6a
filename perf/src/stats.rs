//! Latency and throughput accounting: what each worker records ([`Recorder`]), the live
//! progress line ([`Progress`], [`ProgressLine`]) and the end-of-run [`Summary`].
//!
//! # How numbers flow
//!
//! 1. Each worker thread owns a [`Recorder`]: an HDR histogram of latencies in
//!    microseconds ([`LATENCY_LOWEST_US`] to [`LATENCY_HIGHEST_US`], 3 significant
//!    digits), message and byte counters, and error counts by [`ErrorKind`]. Recording
//!    touches only the worker's own memory: no lock, no atomic.
//! 2. Every [`REPORT_INTERVAL`] (or on each batch) the worker hands its recorder to
//!    [`Progress::report`], which adds it to the current interval behind one mutex and
//!    resets the recorder. So the lock is taken a few times a second per worker, never
//!    per message.
//! 3. Once a second, [`Progress::tick`] (called by the printer thread,
//!    [`Progress::spawn_printer`]) takes the interval, adds it to the run's total and
//!    returns a [`ProgressLine`]: msgs/s, MB/s and p99 over that interval, p99 of the whole
//!    run so far, errors so far.
//! 4. At the end, [`Progress::summary`] (or [`Summary::from_recorders`] without a
//!    `Progress`) builds the [`Summary`] from the **merged** histogram of every worker:
//!    percentiles of all samples, never averages of per-worker percentiles.
//!
//! MB means 10^6 bytes everywhere here; bytes are what the caller counts (message bodies).
//!
//! # `--hdr` file format
//!
//! [`Summary::write_hdr`] writes HdrHistogram's *percentile distribution* text format, the
//! output of Java's `outputPercentileDistribution(out, 1000.0)`: values in
//! **milliseconds** (microseconds / 1000, 3 decimals), [`HDR_TICKS_PER_HALF_DISTANCE`]
//! percentile ticks per half distance, columns `Value Percentile TotalCount
//! 1/(1-Percentile)` and the `#[Mean ...]` footer. HdrHistogram's plotter
//! (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>) reads it as is.
//!
//! This module never does network I/O; it writes only the files it is asked to.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use spillway_wire::ErrorCode;

use crate::load_error::LoadError;

/// Lowest latency the histograms tell apart, in microseconds (0 is recorded as 0).
pub const LATENCY_LOWEST_US: u64 = 1;
/// Highest latency the histograms hold, in microseconds (60 s); longer ones are recorded
/// as this and counted in [`Recorder::latencies_clamped`].
pub const LATENCY_HIGHEST_US: u64 = 60_000_000;
/// Significant decimal digits the histograms keep (relative error below 0.1 %).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// How often a worker should hand its recorder to [`Progress::report`].
pub const REPORT_INTERVAL: Duration = Duration::from_millis(100);
/// How often the printer thread prints a progress line.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Percentile ticks per half distance to 100 % in the `--hdr` file (HdrHistogram's usual 5).
pub const HDR_TICKS_PER_HALF_DISTANCE: u32 = 5;
/// The `--hdr` file's values are the microseconds divided by this: milliseconds.
pub const HDR_VALUE_UNITS_PER_MS: f64 = 1000.0;
/// Bytes in an MB, as every figure here reports it.
pub const BYTES_PER_MB: f64 = 1e6;

const _: () = assert!(LATENCY_LOWEST_US >= 1 && LATENCY_HIGHEST_US >= 2 * LATENCY_LOWEST_US);
const _: () = assert!(LATENCY_SIGNIFICANT_DIGITS <= 5);
const _: () = assert!(REPORT_INTERVAL.as_millis() < PROGRESS_INTERVAL.as_millis());

/// A fresh latency histogram with this module's bounds.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(
        LATENCY_LOWEST_US,
        LATENCY_HIGHEST_US,
        LATENCY_SIGNIFICANT_DIGITS,
    )
    .expect("the constant histogram bounds are valid (checked at compile time)")
}

/// What went wrong with one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The broker or name server answered with this `ErrorCode` number.
    Wire(u16),
    /// Something on the client's side: `"timeout"`, `"connection"`, `"corrupt"`, ...
    Client(&'static str),
}

impl ErrorKind {
    /// The error code number, for wire errors.
    pub fn wire_code(&self) -> Option<u16> {
        match self {
            ErrorKind::Wire(code) => Some(*code),
            ErrorKind::Client(_) => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    /// `TopicNotFound (200)`, `unknown wire error (999)` or the client kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Wire(number) => match ErrorCode::from_u16(*number) {
                Some(code) => write!(f, "{code}"),
                None => write!(f, "unknown wire error ({number})"),
            },
            ErrorKind::Client(kind) => f.write_str(kind),
        }
    }
}

/// One worker's measurements since its last report (or, inside [`Progress`], of an
/// interval or of the whole run). Not shared: each worker records into its own.
#[derive(Clone, Debug)]
pub struct Recorder {
    latency_us: Histogram<u64>,
    messages: u64,
    bytes: u64,
    errors: BTreeMap<ErrorKind, u64>,
    latencies_clamped: u64,
    last_report: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            latency_us: new_latency_histogram(),
            messages: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            latencies_clamped: 0,
            last_report: Instant::now(),
        }
    }

    /// Records one latency.
    pub fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_latency_us_n(micros, 1);
    }

    /// Records one latency given in microseconds.
    pub fn record_latency_us(&mut self, latency_us: u64) {
        self.record_latency_us_n(latency_us, 1);
    }

    /// Records `count` samples of the same latency (e.g. every message of a batch that was
    /// acknowledged together).
    pub fn record_latency_us_n(&mut self, latency_us: u64, count: u64) {
        if count == 0 {
            return;
        }
        if latency_us > LATENCY_HIGHEST_US {
            self.latencies_clamped += count;
        }
        let clamped = latency_us.min(LATENCY_HIGHEST_US);
        // In range by the clamp, so recording cannot fail.
        let _ = self.latency_us.record_n(clamped, count);
    }

    /// Counts messages done and their bytes (body bytes, by this crate's convention).
    pub fn add_messages(&mut self, messages: u64, bytes: u64) {
        self.messages += messages;
        self.bytes += bytes;
    }

    /// Counts one failed request.
    pub fn record_error(&mut self, kind: ErrorKind) {
        self.record_errors(kind, 1);
    }

    /// Counts `count` failures of one kind.
    pub fn record_errors(&mut self, kind: ErrorKind, count: u64) {
        if count > 0 {
            *self.errors.entry(kind).or_insert(0) += count;
        }
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides and no auto-resize: every value of `other` fits.
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds always add");
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.latencies_clamped += other.latencies_clamped;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += count;
        }
    }

    /// Forgets every measurement.
    pub fn reset(&mut self) {
        self.latency_us.reset();
        self.messages = 0;
        self.bytes = 0;
        self.errors.clear();
        self.latencies_clamped = 0;
    }

    /// Messages counted.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Bytes counted.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Failures by kind.
    pub fn errors(&self) -> &BTreeMap<ErrorKind, u64> {
        &self.errors
    }

    /// All failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency samples above [`LATENCY_HIGHEST_US`], recorded as that.
    pub fn latencies_clamped(&self) -> u64 {
        self.latencies_clamped
    }

    /// The latency histogram (microseconds).
    pub fn latency_histogram(&self) -> &Histogram<u64> {
        &self.latency_us
    }
}

/// The run's shared accounting: workers report into it, the printer reads it once a
/// second, the summary comes out of it. Share it with `Arc`.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    /// The first part of the run, whose samples the workers do not report.
    warmup: Duration,
    state: Mutex<ProgressState>,
}

#[derive(Debug)]
struct ProgressState {
    /// Reported since the last tick.
    interval: Recorder,
    /// Everything before the last tick.
    total: Recorder,
    last_tick: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// A run starting now.
    pub fn new() -> Progress {
        Progress::with_warmup(Duration::ZERO)
    }

    /// A run starting now whose first `warmup` is not measured (its progress lines say so).
    pub fn with_warmup(warmup: Duration) -> Progress {
        let started = Instant::now();
        Progress {
            started,
            warmup,
            state: Mutex::new(ProgressState {
                interval: Recorder::new(),
                total: Recorder::new(),
                last_tick: started,
            }),
        }
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Adds `recorder`'s measurements to the current interval and resets it.
    pub fn report(&self, recorder: &mut Recorder) {
        {
            let mut state = self.lock();
            state.interval.merge(recorder);
        }
        recorder.reset();
        recorder.last_report = Instant::now();
    }

    /// [`Progress::report`] if [`REPORT_INTERVAL`] has passed since `recorder`'s last
    /// report; returns whether it reported. Cheap enough to call after every request.
    pub fn report_if_due(&self, recorder: &mut Recorder) -> bool {
        if recorder.last_report.elapsed() < REPORT_INTERVAL {
            return false;
        }
        self.report(recorder);
        true
    }

    /// Ends the current interval: adds it to the total and describes it.
    pub fn tick(&self) -> ProgressLine {
        let now = Instant::now();
        let mut state = self.lock();
        let interval = now.saturating_duration_since(state.last_tick);
        state.last_tick = now;
        let ProgressState {
            interval: current,
            total,
            ..
        } = &mut *state;
        let interval_latency_us_p99 =
            (!current.latency_us.is_empty()).then(|| current.latency_us.value_at_quantile(0.99));
        total.merge(current);
        let elapsed = now.saturating_duration_since(self.started);
        let line = ProgressLine {
            elapsed,
            warming_up: elapsed < self.warmup,
            interval,
            interval_messages: current.messages,
            interval_bytes: current.bytes,
            latency_us_p99: (!total.latency_us.is_empty())
                .then(|| total.latency_us.value_at_quantile(0.99)),
            interval_latency_us_p99,
            errors: total.error_count(),
        };
        current.reset();
        line
    }

    /// Starts a thread that writes a [`ProgressLine`] to `out` every
    /// [`PROGRESS_INTERVAL`] until the returned printer is stopped or dropped.
    pub fn spawn_printer(
        self: &Arc<Progress>,
        mut out: Box<dyn Write + Send>,
    ) -> Result<ProgressPrinter, LoadError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let progress = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut next = progress.started + PROGRESS_INTERVAL;
                loop {
                    let wait = next.saturating_duration_since(Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let line = progress.tick();
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        // The reader went away (closed pipe): nothing more to print to.
                        return;
                    }
                    next += PROGRESS_INTERVAL;
                    // After a stall, skip the missed seconds rather than print a burst.
                    while next <= Instant::now() {
                        next += PROGRESS_INTERVAL;
                    }
                }
            })
            .map_err(|source| {
                LoadError::io("starting the progress printer for", "<stdout>", source)
            })?;
        Ok(ProgressPrinter {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The run's [`Summary`] so far, over the time since [`Progress::new`]. Reports still
    /// held in workers' recorders are not in it: report them first.
    pub fn summary(&self, operation: &str) -> Summary {
        self.summary_over(operation, self.started.elapsed())
    }

    /// [`Progress::summary`] with the run's duration given.
    pub fn summary_over(&self, operation: &str, duration: Duration) -> Summary {
        let mut state = self.lock();
        let ProgressState {
            interval, total, ..
        } = &mut *state;
        total.merge(interval);
        interval.reset();
        Summary::new(operation, total, duration)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        // A worker that panicked while merging left at worst a partly added report; the
        // numbers are still worth printing.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The thread printing progress lines; stops (without a last line) when stopped or
/// dropped.
#[derive(Debug)]
pub struct ProgressPrinter {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressPrinter {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the progress thread panicked");
            }
        }
    }
}

impl Drop for ProgressPrinter {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// One progress line: rates over the last interval, p99 and errors of the run so far.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressLine {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Still in the warm-up, whose samples are not recorded.
    pub warming_up: bool,
    /// Length of the interval the rates cover (about a second).
    pub interval: Duration,
    /// Messages done in the interval.
    pub interval_messages: u64,
    /// Bytes done in the interval.
    pub interval_bytes: u64,
    /// 99th percentile latency of the run so far; `None` before the first sample.
    pub latency_us_p99: Option<u64>,
    /// 99th percentile latency of the samples reported in the interval (workers report
    /// about once a second, so this is roughly the last second); `None` if there were none.
    pub interval_latency_us_p99: Option<u64>,
    /// Errors of the run so far.
    pub errors: u64,
}

impl ProgressLine {
    /// Messages per second over the interval.
    pub fn messages_per_s(&self) -> f64 {
        per_second(self.interval_messages as f64, self.interval)
    }

    /// MB (10^6 bytes) per second over the interval.
    pub fn mb_s(&self) -> f64 {
        per_second(self.interval_bytes as f64 / BYTES_PER_MB, self.interval)
    }
}

impl fmt::Display for ProgressLine {
    /// `   3.0 s   125000 msg/s    128.00 MB/s   p99 1.234 ms (last 1 s 1.100 ms)   errors 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.warming_up {
            return write!(
                f,
                "{:>6.1} s  warm-up (not measured)  errors {}",
                self.elapsed.as_secs_f64(),
                self.errors
            );
        }
        let latency = |p99: Option<u64>| p99.map_or_else(|| "-".to_owned(), format_latency_us);
        write!(
            f,
            "{:>6.1} s  {:>10.0} msg/s  {:>9.2} MB/s  p99 {:>10} (last 1 s {:>10})  errors {}",
            self.elapsed.as_secs_f64(),
            self.messages_per_s(),
            self.mb_s(),
            latency(self.latency_us_p99),
            latency(self.interval_latency_us_p99),
            self.errors
        )
    }
}

/// Failures of one kind, in a [`Summary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// What failed: the error code's name and number, or the client-side kind.
    pub error: String,
    /// The wire error code number; absent for client-side failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_code: Option<u16>,
    /// How many requests failed so.
    pub count: u64,
}

/// The end-of-run report. The JSON (`--json`) has exactly the serialized fields; units
/// are in their names, MB is 10^6 bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// What was measured: `produce`, `consume`, `e2e`, ...
    pub operation: String,
    /// Messages done.
    pub messages: u64,
    /// Bytes done (message bodies).
    pub bytes: u64,
    /// Length of the run.
    pub duration_s: f64,
    /// `messages / duration_s`.
    pub messages_per_s: f64,
    /// `bytes / 10^6 / duration_s`.
    pub mb_s: f64,
    /// Latency samples in the histogram.
    pub latency_samples: u64,
    /// Median latency.
    pub latency_us_p50: u64,
    /// 90th percentile latency.
    pub latency_us_p90: u64,
    /// 99th percentile latency.
    pub latency_us_p99: u64,
    /// 99.9th percentile latency.
    pub latency_us_p999: u64,
    /// 99.99th percentile latency.
    pub latency_us_p9999: u64,
    /// Highest latency (at most [`LATENCY_HIGHEST_US`]).
    pub latency_us_max: u64,
    /// Mean latency.
    pub latency_us_mean: f64,
    /// Samples above [`LATENCY_HIGHEST_US`], counted as that.
    pub latencies_clamped: u64,
    /// All failed requests.
    pub error_count: u64,
    /// Failed requests by kind: wire codes in code order, then client-side kinds.
    pub errors: Vec<ErrorCount>,
    /// The merged histogram the percentiles come from (written by `--hdr`).
    #[serde(skip)]
    latency_us: Histogram<u64>,
}

impl Summary {
    /// The summary of `recorder`'s measurements over `duration`.
    pub fn new(operation: &str, recorder: &Recorder, duration: Duration) -> Summary {
        let histogram = &recorder.latency_us;
        let quantile = |q: f64| histogram.value_at_quantile(q);
        let seconds = duration.as_secs_f64();
        Summary {
            operation: operation.to_owned(),
            messages: recorder.messages,
            bytes: recorder.bytes,
            duration_s: seconds,
            messages_per_s: per_second(recorder.messages as f64, duration),
            mb_s: per_second(recorder.bytes as f64 / BYTES_PER_MB, duration),
            latency_samples: histogram.len(),
            latency_us_p50: quantile(0.50),
            latency_us_p90: quantile(0.90),
            latency_us_p99: quantile(0.99),
            latency_us_p999: quantile(0.999),
            latency_us_p9999: quantile(0.9999),
            latency_us_max: histogram.max(),
            latency_us_mean: if histogram.is_empty() {
                0.0
            } else {
                histogram.mean()
            },
            latencies_clamped: recorder.latencies_clamped,
            error_count: recorder.error_count(),
            errors: recorder
                .errors
                .iter()
                .map(|(kind, &count)| ErrorCount {
                    error: kind.to_string(),
                    wire_code: kind.wire_code(),
                    count,
                })
                .collect(),
            latency_us: histogram.clone(),
        }
    }

    /// The summary of several workers' recorders, merged (histograms added, counters
    /// summed), over `duration`.
    pub fn from_recorders<'a>(
        operation: &str,
        recorders: impl IntoIterator<Item = &'a Recorder>,
        duration: Duration,
    ) -> Summary {
        let mut merged = Recorder::new();
        for recorder in recorders {
            merged.merge(recorder);
        }
        Summary::new(operation, &merged, duration)
    }

    /// The merged latency histogram (microseconds).
    pub fn latency_histogram(&self) -> &Histogram<u64> {
        &self.latency_us
    }

    /// The JSON document, on one line.
    pub fn to_json(&self) -> Result<String, LoadError> {
        serde_json::to_string(self).map_err(|error| LoadError::Serialize {
            what: "the summary",
            reason: error.to_string(),
        })
    }

    /// Writes the JSON document and a newline to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let mut json = self.to_json()?;
        json.push('\n');
        std::fs::write(path, json).map_err(|source| LoadError::io("writing", path, source))
    }

    /// A table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "spillway-perf {}: {} messages, {:.2} MB in {:.2} s (MB = 10^6 bytes of message \
             bodies)",
            self.operation,
            self.messages,
            self.bytes as f64 / BYTES_PER_MB,
            self.duration_s
        );
        let _ = writeln!(
            out,
            "  throughput  {:.0} msg/s  {:.2} MB/s",
            self.messages_per_s, self.mb_s
        );
        if self.latency_samples == 0 {
            let _ = writeln!(out, "  latency     not measured");
        } else {
            let _ = writeln!(
                out,
                "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  ({} samples, \
             merged over all workers)",
                format_latency_us(self.latency_us_p50),
                format_latency_us(self.latency_us_p90),
                format_latency_us(self.latency_us_p99),
                format_latency_us(self.latency_us_p999),
                format_latency_us(self.latency_us_p9999),
                format_latency_us(self.latency_us_max),
                self.latency_samples
            );
        }
        if self.latencies_clamped > 0 {
            let _ = writeln!(
                out,
                "  note        {} samples above {} were counted as {}",
                self.latencies_clamped,
                format_latency_us(LATENCY_HIGHEST_US),
                format_latency_us(LATENCY_HIGHEST_US)
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors      none");
        } else {
            let _ = writeln!(out, "  errors      {}", self.error_count);
            for error in &self.errors {
                let _ = writeln!(out, "    {:>10}  {}", error.count, error.error);
            }
        }
        out
    }

    /// Prints [`Summary::to_table`] on stdout.
    pub fn print_table(&self) -> Result<(), LoadError> {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(self.to_table().as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|source| LoadError::io("writing the summary to", "<stdout>", source))
    }

    /// The histogram in HdrHistogram's percentile distribution text format (see the
    /// module docs): values in milliseconds.
    pub fn percentile_distribution(&self) -> String {
        percentile_distribution(&self.latency_us)
    }

    /// Writes [`Summary::percentile_distribution`] to `path` (`--hdr`).
    pub fn write_hdr(&self, path: &Path) -> Result<(), LoadError> {
        std::fs::write(path, self.percentile_distribution())
            .map_err(|source| LoadError::io("writing the latency histogram to", path, source))
    }
}

/// `histogram` (microseconds) as Java HdrHistogram's `outputPercentileDistribution` with a
/// value scaling ratio of 1000 prints it: values in milliseconds.
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let scale = HDR_VALUE_UNITS_PER_MS;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total_count = 0u64;
    if !histogram.is_empty() {
        for step in histogram.iter_quantiles(HDR_TICKS_PER_HALF_DISTANCE) {
            total_count += step.count_since_last_iteration();
            let value = step.value_iterated_to() as f64 / scale;
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {quantile:2.12} {total_count:10} {:14.2}",
                    1.0 / (1.0 - quantile)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {quantile:2.12} {total_count:10}");
            }
        }
    }
    let (mean, deviation) = if histogram.is_empty() {
        (0.0, 0.0)
    } else {
        (histogram.mean() / scale, histogram.stdev() / scale)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {deviation:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        histogram.max() as f64 / scale,
        histogram.len()
    );
    // HdrHistogram's sub-bucket count: the power of two holding 2 * 10^digits.
    let sub_buckets = (2 * 10u64.pow(u32::from(histogram.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets
    );
    out
}

/// `850 µs`, `1.234 ms`, `12.345 s`.
pub fn format_latency_us(latency_us: u64) -> String {
    if latency_us < 1_000 {
        format!("{latency_us} µs")
    } else if latency_us < 1_000_000 {
        format!("{:.3} ms", latency_us as f64 / 1e3)
    } else {
        format!("{:.3} s", latency_us as f64 / 1e6)
    }
}

/// `amount` per second over `duration`; 0 over a zero duration.
fn per_second(amount: f64, duration: Duration) -> f64 {
    let seconds = duration.as_secs_f64();
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of latencies: 1 µs to about 2 s, heavy-tailed.
    fn latencies(seed: u64, count: usize) -> Vec<u64> {
        let mut state = seed | 1;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let exponent = state % 21; // 2^0 .. 2^20 µs
                (1u64 << exponent) + state % (1 << exponent)
            })
            .collect()
    }

    #[test]
    fn merging_two_recorders_equals_recording_into_one() {
        let (first, second) = (latencies(1, 5_000), latencies(2, 7_000));
        let mut left = Recorder::new();
        let mut right = Recorder::new();
        let mut both = Recorder::new();
        for &latency in &first {
            left.record_latency_us(latency);
            both.record_latency_us(latency);
        }
        for &latency in &second {
            right.record_latency_us(latency);
            both.record_latency_us(latency);
        }
        left.add_messages(5_000, 5_000_000);
        right.add_messages(7_000, 7_000_000);
        both.add_messages(12_000, 12_000_000);
        left.record_error(ErrorKind::Wire(200));
        right.record_error(ErrorKind::Wire(200));
        right.record_error(ErrorKind::Client("timeout"));
        both.record_errors(ErrorKind::Wire(200), 2);
        both.record_error(ErrorKind::Client("timeout"));

        let mut merged = left.clone();
        merged.merge(&right);
        assert_eq!(merged.latency_histogram(), both.latency_histogram());
        assert_eq!(merged.messages(), both.messages());
        assert_eq!(merged.bytes(), both.bytes());
        assert_eq!(merged.errors(), both.errors());
        for quantile in [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(
                merged.latency_histogram().value_at_quantile(quantile),
                both.latency_histogram().value_at_quantile(quantile)
            );
        }
        let second_second = Duration::from_secs(2);
        let summary = Summary::from_recorders("produce", [&left, &right], second_second);
        let direct = Summary::new("produce", &both, second_second);
        assert_eq!(summary.to_json().unwrap(), direct.to_json().unwrap());
    }

    #[test]
    fn merged_percentiles_are_not_averages_of_per_worker_percentiles() {
        // A fast worker (1000 samples at 100 µs) and a slow one (10 at 50 ms): the merged
        // p99 is where 1 % of 1010 samples lie, i.e. still fast, and the max is the slow one.
        let mut fast = Recorder::new();
        let mut slow = Recorder::new();
        fast.record_latency_us_n(100, 1_000);
        slow.record_latency_us_n(50_000, 10);
        let summary = Summary::from_recorders("e2e", [&fast, &slow], Duration::from_secs(1));
        assert_eq!(summary.latency_samples, 1_010);
        assert_eq!(summary.latency_us_p50, 100);
        assert_eq!(summary.latency_us_p99, 100);
        assert!((49_950..=50_050).contains(&summary.latency_us_p999));
        assert!((49_950..=50_050).contains(&summary.latency_us_max));
    }

    #[test]
    fn percentiles_of_a_uniform_run_are_where_they_belong() {
        let mut recorder = Recorder::new();
        for latency in 1..=10_000 {
            recorder.record_latency_us(latency);
        }
        recorder.add_messages(10_000, 10_000 * 1_000);
        let summary = Summary::new("produce", &recorder, Duration::from_secs(4));
        // 3 significant digits: within 0.1 % of the exact order statistic.
        let near = |value: u64, exact: u64| value.abs_diff(exact) * 1000 <= exact;
        assert!(near(summary.latency_us_p50, 5_000), "{summary:?}");
        assert!(near(summary.latency_us_p90, 9_000), "{summary:?}");
        assert!(near(summary.latency_us_p99, 9_900), "{summary:?}");
        assert!(near(summary.latency_us_p999, 9_990), "{summary:?}");
        assert!(near(summary.latency_us_p9999, 9_999), "{summary:?}");
        assert!(near(summary.latency_us_max, 10_000), "{summary:?}");
        assert_eq!(summary.messages_per_s, 2_500.0);
        assert_eq!(summary.mb_s, 2.5);
    }

    #[test]
    fn latencies_past_the_top_are_clamped_and_counted() {
        let mut recorder = Recorder::new();
        recorder.record_latency(Duration::from_secs(3600));
        recorder.record_latency_us(0);
        assert_eq!(recorder.latencies_clamped(), 1);
        let summary = Summary::new("produce", &recorder, Duration::ZERO);
        assert!(summary.latency_us_max >= LATENCY_HIGHEST_US);
        assert_eq!(summary.latency_us_p50, 0);
        assert_eq!(
            summary.messages_per_s, 0.0,
            "no division by a zero duration"
        );
        assert!(summary.to_table().contains("1 samples above 60.000 s"));
    }

    #[test]
    fn summary_json_has_exactly_the_contract_fields() {
        let mut recorder = Recorder::new();
        recorder.record_latency_us(250);
        recorder.add_messages(1, 100);
        recorder.record_errors(ErrorKind::Wire(300), 3);
        recorder.record_error(ErrorKind::Wire(999));
        recorder.record_error(ErrorKind::Client("timeout"));
        let summary = Summary::new("produce", &recorder, Duration::from_secs(1));
        let value: serde_json::Value = serde_json::from_str(&summary.to_json().unwrap()).unwrap();
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "bytes",
                "duration_s",
                "error_count",
                "errors",
                "latencies_clamped",
                "latency_samples",
                "latency_us_max",
                "latency_us_mean",
                "latency_us_p50",
                "latency_us_p90",
                "latency_us_p99",
                "latency_us_p999",
                "latency_us_p9999",
                "mb_s",
                "messages",
                "messages_per_s",
                "operation"
            ]
        );
        assert_eq!(value["error_count"], 5);
        assert_eq!(
            value["errors"],
            serde_json::json!([
                {"error": "DiskFull (300)", "wire_code": 300, "count": 3},
                {"error": "unknown wire error (999)", "wire_code": 999, "count": 1},
                {"error": "timeout", "count": 1},
            ])
        );
        let table = summary.to_table();
        assert!(table.contains("MB = 10^6 bytes"), "{table}");
        assert!(table.contains("p50 250 µs"), "{table}");
        assert!(table.contains("3  DiskFull (300)"), "{table}");
    }

    #[test]
    fn progress_reports_fold_into_ticks_and_the_summary() {
        let progress = Progress::new();
        let mut worker = Recorder::new();
        worker.record_latency_us_n(1_000, 10);
        worker.add_messages(10, 10_000);
        progress.report(&mut worker);
        assert_eq!(worker.messages(), 0, "reporting resets the recorder");
        assert!(worker.latency_histogram().is_empty());

        let first = progress.tick();
        assert_eq!(
            (first.interval_messages, first.interval_bytes),
            (10, 10_000)
        );
        assert_eq!(first.latency_us_p99, Some(1_000));

        worker.record_latency_us(2_000);
        worker.add_messages(1, 1_000);
        worker.record_error(ErrorKind::Client("timeout"));
        assert!(
            !progress.report_if_due(&mut worker),
            "not due right after a report"
        );
        progress.report(&mut worker);
        let second = progress.tick();
        assert_eq!(
            second.interval_messages, 1,
            "a tick covers its interval only"
        );
        assert_eq!(second.errors, 1);
        // The interval's p99 covers its own samples only: none in the next one.
        assert_eq!(second.interval_latency_us_p99, Some(2_000));
        assert_eq!(progress.tick().interval_latency_us_p99, None);

        worker.add_messages(4, 4_000);
        progress.report(&mut worker); // after the last tick: still in the summary
        let summary = progress.summary_over("produce", Duration::from_secs(1));
        assert_eq!((summary.messages, summary.bytes), (15, 15_000));
        assert_eq!(summary.latency_samples, 11);
        assert_eq!(summary.error_count, 1);
    }

    #[test]
    fn progress_line_shows_rates_over_its_interval() {
        let line = ProgressLine {
            elapsed: Duration::from_millis(3_000),
            warming_up: false,
            interval: Duration::from_millis(500),
            interval_messages: 50_000,
            interval_bytes: 64_000_000,
            latency_us_p99: Some(1_234),
            interval_latency_us_p99: Some(2_500),
            errors: 2,
        };
        assert_eq!(line.messages_per_s(), 100_000.0);
        assert_eq!(line.mb_s(), 128.0);
        assert_eq!(
            line.to_string(),
            "   3.0 s      100000 msg/s     128.00 MB/s  p99   1.234 ms (last 1 s   2.500 ms)  errors 2"
        );
        let empty = ProgressLine {
            latency_us_p99: None,
            interval_latency_us_p99: None,
            ..line
        };
        assert!(empty
            .to_string()
            .contains("p99          - (last 1 s          -)"));
        let warming_up = ProgressLine {
            warming_up: true,
            ..line
        };
        assert_eq!(
            warming_up.to_string(),
            "   3.0 s  warm-up (not measured)  errors 2"
        );
    }

    #[test]
    fn printer_prints_lines_until_stopped() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let progress = Arc::new(Progress::new());
        let output = Shared::default();
        let printer = progress.spawn_printer(Box::new(output.clone())).unwrap();
        let mut worker = Recorder::new();
        worker.add_messages(1, 1);
        progress.report(&mut worker);
        let text = || String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        // The first line is due one interval after the start; allow a loaded machine 10.
        let deadline = Instant::now() + 10 * PROGRESS_INTERVAL;
        while !text().contains('\n') {
            assert!(Instant::now() < deadline, "no progress line");
            std::thread::sleep(PROGRESS_INTERVAL / 10);
        }
        let stopping = Instant::now();
        printer.stop();
        assert!(
            stopping.elapsed() < PROGRESS_INTERVAL,
            "stopping waits for no tick"
        );
        let printed = text();
        let first = printed.lines().next().unwrap();
        assert!(
            first.contains("msg/s") && first.contains("errors 0"),
            "{printed:?}"
        );
        std::thread::sleep(PROGRESS_INTERVAL / 2);
        assert_eq!(text(), printed, "nothing printed after the stop");
    }

    #[test]
    fn hdr_file_is_the_percentile_distribution_in_milliseconds() {
        let mut recorder = Recorder::new();
        for latency in 1..=1_000u64 {
            recorder.record_latency_us(latency * 10);
        }
        let summary = Summary::new("e2e", &recorder, Duration::from_secs(1));
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("latency.hgrm");
        summary.write_hdr(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       0.010 0.000000000000          1           1.00"
        );
        let rows: Vec<Vec<&str>> = lines[2..]
            .iter()
            .take_while(|line| !line.starts_with('#'))
            .map(|line| line.split_whitespace().collect())
            .collect();
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100 % row has no 1/(1-p) column");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        let value: f64 = last[0].parse().unwrap();
        assert!((9.99..=10.01).contains(&value), "max in ms: {value}");
        let counts: Vec<u64> = rows.iter().map(|row| row[2].parse().unwrap()).collect();
        assert!(counts.windows(2).all(|pair| pair[0] <= pair[1]));
        let median = rows.iter().find(|row| row[1] == "0.500000000000").unwrap();
        // 5000 µs is counted in a 4 µs-wide bucket; HdrHistogram prints the bucket's
        // highest equivalent value, as Java's output does.
        assert_eq!(median[0], "5.003");
        assert!(text.contains("#[Max     =       10.007, Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn latencies_format_in_readable_units() {
        assert_eq!(format_latency_us(850), "850 µs");
        assert_eq!(format_latency_us(1_234), "1.234 ms");
        assert_eq!(format_latency_us(12_345_678), "12.346 s");
    }
}
