//! What a `storage` run reports: the JSON document (`--json`) and the human table.
//!
//! The JSON shape is a contract for scripts and CI: one object, the fields below, nothing
//! added to stdout around it. Units are in the field names; MB means 10^6 bytes, and every
//! speed counts message bodies (payload), not the stored record overhead. Fields marked
//! "human output only" are skipped in the JSON.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct StorageReport {
    /// Raw O_DIRECT sequential write speed of the disk under `--dir`: the median of the
    /// measurements (one right before each case of each round).
    pub raw_write_mb_s: f64,
    /// One entry per engine case, in the order they ran in each round.
    pub cases: Vec<CaseReport>,
    /// Rounds run (human output only).
    #[serde(skip)]
    pub rounds: u32,
    /// Raw write speed before each case of each round, in order (human output only).
    #[serde(skip)]
    pub raw_write_mb_s_samples: Vec<f64>,
    /// Where the run wrote (human output only).
    #[serde(skip)]
    pub dir: PathBuf,
    /// File system under `dir` (human output only).
    #[serde(skip)]
    pub file_system: &'static str,
    /// Bytes written by the baseline, and message body bytes appended by each case, per
    /// round (human output only).
    #[serde(skip)]
    pub payload_bytes_per_case: u64,
}

/// One engine case, over all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    /// Size of each message body (the payload; the stored record adds header and topic).
    pub record_bytes: u32,
    /// `"sync"` or `"async"`.
    pub flush: &'static str,
    /// Message body bytes appended per second, in 10^6 bytes: median over rounds.
    pub mb_s: f64,
    /// Records appended per second: median over rounds.
    pub records_per_s: f64,
    /// Median over rounds of each round's `mb_s` over that round's raw write speed.
    pub ratio_to_raw: f64,
    /// Median append latency (call to durable), over the appends of all rounds.
    pub latency_us_p50: f64,
    /// 99th percentile append latency, over all rounds.
    pub latency_us_p99: f64,
    /// 99.9th percentile append latency, over all rounds.
    pub latency_us_p999: f64,
    /// Whole encoded record bytes appended per second, in 10^6 bytes: median over rounds
    /// (human output only).
    #[serde(skip)]
    pub stored_mb_s: f64,
    /// Lowest per-round ratio to raw (human output only).
    #[serde(skip)]
    pub ratio_to_raw_min: f64,
    /// Highest per-round ratio to raw (human output only).
    #[serde(skip)]
    pub ratio_to_raw_max: f64,
}

impl StorageReport {
    /// The JSON document, on one line.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A table for people.
    pub fn to_table(&self) -> String {
        let rounds = self.rounds;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "spillway-perf storage: {} payload bytes ({:.1} MB) per case and round, {rounds} \
             round{}, in {} ({})",
            self.payload_bytes_per_case,
            self.payload_bytes_per_case as f64 / 1e6,
            if rounds == 1 { "" } else { "s" },
            self.dir.display(),
            self.file_system,
        );
        let per_round: Vec<String> = self
            .raw_write_mb_s_samples
            .iter()
            .map(|mb_s| format!("{mb_s:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "raw O_DIRECT sequential write (1 MiB writes, 8 in flight, one fdatasync): \
             median {:.1} MB/s; before each case: {} MB/s",
            self.raw_write_mb_s,
            per_round.join(", "),
        );
        let _ = writeln!(
            out,
            "record_bytes is the message body size. MB/s is payload (body bytes per second, \
             10^6 B); stored MB/s counts whole encoded records (body + header + topic)."
        );
        let _ = writeln!(
            out,
            "Speeds and ratio_to_raw are medians over rounds, each round's ratio taken to the \
             raw speed measured right before that case; ratio range is the per-round min-max; \
             latencies cover the appends of all rounds. Each case first appends the store's \
             tail-cache size untimed (warm-up: later write buffers are recycled, not fresh)."
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>12}  {:<5}  {:>9}  {:>11}  {:>12}  {:>12}  {:>13}  {:>9}  {:>9}  {:>9}",
            "record_bytes",
            "flush",
            "MB/s",
            "stored MB/s",
            "records/s",
            "ratio_to_raw",
            "ratio range",
            "p50_us",
            "p99_us",
            "p99.9_us"
        );
        for case in &self.cases {
            let _ = writeln!(
                out,
                "{:>12}  {:<5}  {:>9.1}  {:>11.1}  {:>12.0}  {:>12.3}  {:>13}  {:>9.0}  {:>9.0}  \
                 {:>9.0}",
                case.record_bytes,
                case.flush,
                case.mb_s,
                case.stored_mb_s,
                case.records_per_s,
                case.ratio_to_raw,
                format!("{:.3}-{:.3}", case.ratio_to_raw_min, case.ratio_to_raw_max),
                case.latency_us_p50,
                case.latency_us_p99,
                case.latency_us_p999,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StorageReport {
        StorageReport {
            raw_write_mb_s: 1000.0,
            cases: vec![CaseReport {
                record_bytes: 1024,
                flush: "sync",
                mb_s: 800.0,
                records_per_s: 781_250.0,
                ratio_to_raw: 0.8,
                latency_us_p50: 100.0,
                latency_us_p99: 200.0,
                latency_us_p999: 300.0,
                stored_mb_s: 882.0,
                ratio_to_raw_min: 0.75,
                ratio_to_raw_max: 0.875,
            }],
            rounds: 3,
            raw_write_mb_s_samples: vec![900.0, 1000.0, 1200.0],
            dir: PathBuf::from("/data"),
            file_system: "ext4",
            payload_bytes_per_case: 1 << 30,
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let value: serde_json::Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        let top: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(top, ["cases", "raw_write_mb_s"]);
        let case: Vec<_> = value["cases"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            case,
            [
                "flush",
                "latency_us_p50",
                "latency_us_p99",
                "latency_us_p999",
                "mb_s",
                "ratio_to_raw",
                "record_bytes",
                "records_per_s"
            ]
        );
        assert_eq!(value["cases"][0]["flush"], "sync");
    }

    #[test]
    fn table_lists_every_case_and_round() {
        let table = sample().to_table();
        assert!(table.contains("3 rounds"), "{table}");
        assert!(table.contains("median 1000.0 MB/s"), "{table}");
        assert!(table.contains("900.0, 1000.0, 1200.0 MB/s"), "{table}");
        assert!(table.contains("MB/s is payload"), "{table}");
        assert!(table.contains("stored MB/s"), "{table}");
        assert!(table.contains("  sync "), "{table}");
        assert!(table.contains("    882.0  "), "{table}");
        assert!(table.contains("0.750-0.875"), "{table}");
    }
}
