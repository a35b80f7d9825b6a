//! [`AvailableCores`]: the CPU cores this process may run on, which bounds the `cores` a
//! config can pin its shards to.
//!
//! "Available" is the process's CPU affinity mask (`sched_getaffinity`), not just the
//! machine's core count: under a cpuset (containers, `taskset`, systemd `CPUAffinity=`)
//! the allowed cores may be `4-7`, and pinning a shard to core 0 would fail at start.
//! When the mask covers `0..n` this is the same as `core < available_parallelism()`.
//! Validation takes the set as a value, so tests can describe any machine.

use std::collections::BTreeSet;
use std::fmt;

/// The set of core ids shards may be pinned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailableCores {
    cores: BTreeSet<usize>,
}

impl AvailableCores {
    /// The cores this process may run on now. Falls back to `0 .. available_parallelism()`
    /// if the affinity mask cannot be read.
    pub fn detect() -> AvailableCores {
        affinity_mask().unwrap_or_else(|| {
            let count = std::thread::available_parallelism().map_or(1, |count| count.get());
            AvailableCores::first(count)
        })
    }

    /// Cores `0 .. count`: a machine with `count` cores and no affinity restriction.
    pub fn first(count: usize) -> AvailableCores {
        (0..count).collect()
    }

    /// Whether shards may be pinned to `core`.
    pub fn contains(&self, core: usize) -> bool {
        self.cores.contains(&core)
    }

    /// How many cores there are.
    pub fn len(&self) -> usize {
        self.cores.len()
    }

    /// Whether there are none (never true of a running process).
    pub fn is_empty(&self) -> bool {
        self.cores.is_empty()
    }
}

impl FromIterator<usize> for AvailableCores {
    fn from_iter<I: IntoIterator<Item = usize>>(cores: I) -> Self {
        AvailableCores {
            cores: cores.into_iter().collect(),
        }
    }
}

/// Ranges, as the kernel prints CPU lists: `0-3,6`.
impl fmt::Display for AvailableCores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cores = self.cores.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = cores.next() {
            let mut end = start;
            while cores.peek() == Some(&(end + 1)) {
                end += 1;
                cores.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The calling thread's affinity mask, or `None` if the kernel refused to give it.
fn affinity_mask() -> Option<AvailableCores> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size passed is the size of `set`, which
    // the kernel writes at most.
    let result =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if result != 0 {
        return None;
    }
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every index is below the set's capacity in bits.
    let cores: AvailableCores = (0..capacity)
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect();
    (!cores.is_empty()).then_some(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_cores_include_one_this_thread_may_run_on() {
        let cores = AvailableCores::detect();
        assert!(!cores.is_empty());
        assert!(cores.len() <= 8 * std::mem::size_of::<libc::cpu_set_t>());
    }

    #[test]
    fn core_lists_print_as_ranges() {
        assert_eq!(AvailableCores::first(4).to_string(), "0-3");
        let cores: AvailableCores = [0, 1, 2, 5, 7, 8].into_iter().collect();
        assert_eq!(cores.to_string(), "0-2,5,7-8");
        assert_eq!(AvailableCores::first(0).to_string(), "none");
    }
}
