//! What a `storage` run reports: the JSON document (`--json`) and the human table.
//!
//! The JSON shape is a contract for scripts and CI: one object, the fields below, nothing
//! added to stdout around it. Units are in the field names; MB means 10^6 bytes.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct StorageReport {
    /// Raw O_DIRECT sequential write speed of the disk under `--dir`.
    pub raw_write_mb_s: f64,
    /// One entry per engine case, in the order they ran.
    pub cases: Vec<CaseReport>,
    /// Where the run wrote (human output only).
    #[serde(skip)]
    pub dir: PathBuf,
    /// File system under `dir` (human output only).
    #[serde(skip)]
    pub file_system: &'static str,
    /// Bytes written by the baseline and appended by each case (human output only).
    #[serde(skip)]
    pub bytes_per_case: u64,
}

/// One engine case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    /// Size of each whole encoded record.
    pub record_bytes: u32,
    /// `"sync"` or `"async"`.
    pub flush: &'static str,
    /// Record bytes appended per second, in 10^6 bytes.
    pub mb_s: f64,
    /// Records appended per second.
    pub records_per_s: f64,
    /// `mb_s / raw_write_mb_s`.
    pub ratio_to_raw: f64,
    /// Median append latency (call to durable).
    pub latency_us_p50: f64,
    /// 99th percentile append latency.
    pub latency_us_p99: f64,
    /// 99.9th percentile append latency.
    pub latency_us_p999: f64,
}

impl StorageReport {
    /// The JSON document, on one line.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "spillway-perf storage: {} bytes ({:.1} MB) per case in {} ({})",
            self.bytes_per_case,
            self.bytes_per_case as f64 / 1e6,
            self.dir.display(),
            self.file_system,
        );
        let _ = writeln!(
            out,
            "raw O_DIRECT sequential write (1 MiB writes, 8 in flight, one fdatasync): {:.1} MB/s",
            self.raw_write_mb_s
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>12}  {:<5}  {:>9}  {:>12}  {:>12}  {:>9}  {:>9}  {:>9}",
            "record_bytes",
            "flush",
            "MB/s",
            "records/s",
            "ratio_to_raw",
            "p50_us",
            "p99_us",
            "p99.9_us"
        );
        for case in &self.cases {
            let _ = writeln!(
                out,
                "{:>12}  {:<5}  {:>9.1}  {:>12.0}  {:>12.3}  {:>9.0}  {:>9.0}  {:>9.0}",
                case.record_bytes,
                case.flush,
                case.mb_s,
                case.records_per_s,
                case.ratio_to_raw,
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
            }],
            dir: PathBuf::from("/data"),
            file_system: "ext4",
            bytes_per_case: 1 << 30,
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
    fn table_lists_every_case() {
        let table = sample().to_table();
        assert!(table.contains("1000.0 MB/s"), "{table}");
        assert!(table.contains("  sync "), "{table}");
    }
}
