//! A server binary running as a child process: started, waited for until it prints
//! `listening on ADDR`, stopped with a signal, killed when dropped.
//!
//! Both servers print exactly that line on stdout once they serve, and log to stderr. Stdout
//! is read by a thread (which keeps draining it, so a later line never meets a closed pipe);
//! stderr goes to a log file whose tail is quoted in every panic about the process, because
//! a failing cross-process test is hard to debug from the test's side alone.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::wait::DEADLINE;

/// Lines of the log quoted in panic messages.
pub const LOG_TAIL_LINES: usize = 40;

/// How a server announces that it serves, followed by the bound address.
pub const LISTENING_PREFIX: &str = "listening on ";

/// One run of a server binary.
#[derive(Debug)]
pub struct ServerProcess {
    /// What it is, for messages ("broker broker-a").
    what: String,
    /// `None` once it has exited and been waited for.
    child: Option<Child>,
    address: SocketAddr,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `command` with stderr appended to `log_path`, and waits (up to [`DEADLINE`])
    /// for its `listening on ADDR` line. Panics, quoting the log, if it exits or stays
    /// silent instead.
    pub fn start(what: &str, mut command: Command, log_path: &Path) -> ServerProcess {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|error| panic!("open {}: {error}", log_path.display()));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {what} ({command:?}): {error}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (line_sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The receiver is gone once the address was read: keep draining anyway.
                let _ = line_sender.send(line);
            }
        });

        let mut process = ServerProcess {
            what: what.to_owned(),
            child: Some(child),
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
            log_path: log_path.to_owned(),
        };
        let started = Instant::now();
        let mut other_lines = Vec::new();
        loop {
            let remaining = DEADLINE.saturating_sub(started.elapsed());
            match lines.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(address) = line.trim().strip_prefix(LISTENING_PREFIX) {
                        process.address = address.parse().unwrap_or_else(|error| {
                            panic!("{what} printed {line:?}, not an address: {error}")
                        });
                        return process;
                    }
                    other_lines.push(line);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: it exited (or is exiting).
                    let status = process.wait_for_exit(DEADLINE);
                    panic!(
                        "{what} exited with {status} before printing `{LISTENING_PREFIX}ADDR`; \
                         stdout: {other_lines:?}\n{}",
                        process.log_tail()
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    process.kill_now();
                    panic!(
                        "{what} did not print `{LISTENING_PREFIX}ADDR` within {DEADLINE:?}; \
                         stdout: {other_lines:?}\n{}",
                        process.log_tail()
                    );
                }
            }
        }
    }

    /// The address it printed.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has not exited yet (as far as a non-blocking wait can tell).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Sends `signal` and waits up to [`DEADLINE`] for the exit; returns its status.
    /// Panics, quoting the log, if it does not exit in time (it is then killed).
    pub fn stop(&mut self, signal: i32) -> ExitStatus {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.what));
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which has not been waited for, so the pid is
        // still ours.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
        self.wait_for_exit(DEADLINE)
    }

    /// The last [`LOG_TAIL_LINES`] lines of its stderr log (of every run that shared the log
    /// file), for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, &self.what)
    }

    /// Waits up to `deadline` for the exit; kills it and panics if it does not come.
    fn wait_for_exit(&mut self, deadline: Duration) -> ExitStatus {
        let what = self.what.clone();
        let Some(mut child) = self.child.take() else {
            panic!("{what} was already waited for");
        };
        // Block on the exit itself, in a thread, so the deadline is a receive timeout.
        let pid = child.id();
        let (exited, exit) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait());
        });
        let status = match exit.recv_timeout(deadline) {
            Ok(Ok(status)) => Some(status),
            Ok(Err(error)) => panic!("wait for {what}: {error}"),
            Err(_) => None,
        };
        match status {
            Some(status) => status,
            None => {
                // SAFETY: kill(2) on our child's pid; its waiting thread has not reaped it
                // (no exit came), so the pid is still ours.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!(
                    "{what} did not exit within {deadline:?}\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// SIGKILL and reap, ignoring errors (it may be gone already).
    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`, headed by `what`.
pub fn log_tail(path: &Path, what: &str) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => return format!("(cannot read the log of {what}: {error})"),
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!(
        "--- last {} lines of the log of {what} ({}):\n{}\n---",
        tail.len(),
        path.display(),
        tail.join("\n")
    )
}
