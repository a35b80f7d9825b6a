//! [`LocalCluster`]: a name server and a broker on loopback, as real child processes, for
//! `quickstart` and for tests — without any binary but `spillway-perf` itself.
//!
//! # What `start` does
//!
//! 1. Creates a fresh directory `spillway-quickstart-XXXXXX` in
//!    [`LocalClusterOptions::parent_dir`] (default: the current directory, which is
//!    normally on a disk; the commit log needs O_DIRECT, which some file systems refuse —
//!    tmpfs on older kernels, some network file systems — and `/tmp` is often tmpfs).
//! 2. Starts `spillway-perf serve-nameserver --listen 127.0.0.1:0` (the hidden subcommand,
//!    [`crate::serve`]) and waits for its `listening on ADDR` line.
//! 3. Writes `broker.toml` (listen `127.0.0.1:0`, that name server, the shard count, flush
//!    mode, segment size, one topic with its queues, data in `data/`), checks it with the
//!    broker's own config validation, starts `spillway-perf serve-broker --config
//!    broker.toml` and waits for its `listening on ADDR` line.
//! 4. Asks the name server for the topic's route until the broker is in it, so clients can
//!    start at once.
//!
//! Each wait has a deadline ([`LocalClusterOptions::start_deadline`], 30 s). Each server's
//! stderr (its log) goes to `nameserver.log` / `broker.log` in the directory, and every
//! error about a server quotes the tail of its log. A broker refusing the directory because
//! the file system does not take O_DIRECT is reported as
//! [`LoadError::DirectIoUnsupported`] with the broker's own line.
//!
//! # Stopping
//!
//! [`LocalCluster::stop`] sends SIGTERM to the broker (which unregisters from the name
//! server, drains and closes its stores), requires exit status 0 within
//! [`LocalClusterOptions::stop_deadline`], does the same for the name server, then removes
//! the directory. If a server does not stop cleanly, the directory is kept for inspection
//! and the error says where. Dropping a cluster without `stop` kills both servers with
//! SIGKILL and removes the directory.
//!
//! The servers run in their own process group, so a Ctrl-C at the terminal reaches only
//! `spillway-perf`, which decides when to stop them; and they get SIGTERM if the thread
//! that started them dies (`PR_SET_PDEATHSIG`), so a killed `spillway-perf` leaves no
//! servers behind. Start the cluster from a thread that outlives it (the main thread).
//!
//! This module never touches anything outside the directory it created.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use spillway_storage::FlushMode;
use spillway_wire::message::{GetTopicRouteRequest, GetTopicRouteResponse};
use spillway_wire::{Envelope, ErrorCode, FrameDecoder, FrameEncoder, RequestId, WireHeader};
use tempfile::TempDir;
use toml::{Table, Value};

use crate::load_error::LoadError;

/// Topic the cluster creates unless told otherwise.
pub const DEFAULT_TOPIC: &str = "spillway-perf";
/// Queues of that topic.
pub const DEFAULT_QUEUE_COUNT: u32 = 8;
/// Shards of the broker.
pub const DEFAULT_SHARD_COUNT: u16 = 2;
/// Commit-log segment size: smaller than the engine's 1 GiB, so a short run does not
/// preallocate gigabytes.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 256 << 20;
/// How long each server may take to announce itself, and the route to appear.
pub const DEFAULT_START_DEADLINE: Duration = Duration::from_secs(30);
/// How long each server may take to exit after SIGTERM.
pub const DEFAULT_STOP_DEADLINE: Duration = Duration::from_secs(30);
/// The cluster the broker registers under.
pub const CLUSTER_NAME: &str = "spillway-perf";
/// The broker's name (its broker group).
pub const BROKER_NAME: &str = "local-broker";
/// Prefix of the cluster's directory.
pub const DIRECTORY_PREFIX: &str = "spillway-quickstart-";
/// How a server announces that it serves, followed by its address.
pub const LISTENING_PREFIX: &str = "listening on ";
/// Lines of a server's log quoted in errors.
pub const LOG_TAIL_LINES: usize = 20;
/// What the storage engine says when the file system refuses O_DIRECT.
pub const DIRECT_IO_REFUSAL: &str = "O_DIRECT is not supported";

/// Pause between looks at a stopping process.
const EXIT_POLL_PAUSE: Duration = Duration::from_millis(20);
/// Pause between route requests while waiting for the broker's registration.
const ROUTE_POLL_PAUSE: Duration = Duration::from_millis(50);
/// Longest one route request may take.
const ROUTE_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a server that closed its stdout during start has to exit.
const EXIT_AFTER_CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalClusterOptions {
    /// The `spillway-perf` binary to run the servers with; `None`: this process's own
    /// executable (`std::env::current_exe`). Tests pass `CARGO_BIN_EXE_spillway-perf`.
    pub executable: Option<PathBuf>,
    /// Where the cluster's directory is created (`--data-dir`); must be on a file system
    /// that takes O_DIRECT.
    pub parent_dir: PathBuf,
    /// Shards of the broker.
    pub shard_count: u16,
    /// When the broker acknowledges (`storage.flush`).
    pub flush: FlushMode,
    /// `storage.segment_size_bytes`.
    pub segment_size_bytes: u64,
    /// The topic created at start.
    pub topic: String,
    /// Its queues.
    pub queue_count: u32,
    /// Deadline of each wait during start.
    pub start_deadline: Duration,
    /// Deadline of each server's exit during stop.
    pub stop_deadline: Duration,
}

impl Default for LocalClusterOptions {
    fn default() -> Self {
        LocalClusterOptions {
            executable: None,
            parent_dir: PathBuf::from("."),
            shard_count: DEFAULT_SHARD_COUNT,
            flush: FlushMode::Sync,
            segment_size_bytes: DEFAULT_SEGMENT_SIZE_BYTES,
            topic: DEFAULT_TOPIC.to_owned(),
            queue_count: DEFAULT_QUEUE_COUNT,
            start_deadline: DEFAULT_START_DEADLINE,
            stop_deadline: DEFAULT_STOP_DEADLINE,
        }
    }
}

/// A running name server and broker, and their directory.
#[derive(Debug)]
pub struct LocalCluster {
    // Dropped in this order: the broker is killed before the name server, and both before
    // the directory is removed.
    broker: ServerProcess,
    name_server: ServerProcess,
    directory: TempDir,
    topic: String,
    queue_count: u32,
    stop_deadline: Duration,
}

impl LocalCluster {
    /// Starts the cluster (see the module docs); returns once the topic is routable.
    pub fn start(options: LocalClusterOptions) -> Result<LocalCluster, LoadError> {
        if options.topic.is_empty() || options.queue_count == 0 || options.shard_count == 0 {
            return Err(LoadError::ClusterOptions {
                reason: format!(
                    "topic {:?} with {} queues on {} shards: the topic needs a name, a queue \
                     and a shard",
                    options.topic, options.queue_count, options.shard_count
                ),
            });
        }
        let executable = match &options.executable {
            Some(executable) => executable.clone(),
            None => std::env::current_exe()
                .map_err(|source| LoadError::io("finding the path of", "spillway-perf", source))?,
        };
        let parent = std::fs::canonicalize(&options.parent_dir).map_err(|source| {
            LoadError::io("resolving the data directory", &options.parent_dir, source)
        })?;
        let directory = tempfile::Builder::new()
            .prefix(DIRECTORY_PREFIX)
            .tempdir_in(&parent)
            .map_err(|source| LoadError::io("creating a cluster directory in", &parent, source))?;
        let directory_path = directory.path().to_owned();

        let name_server = ServerProcess::start(
            "name server",
            &executable,
            &["serve-nameserver", "--listen", "127.0.0.1:0"],
            &directory_path,
            &directory_path.join("nameserver.log"),
            options.start_deadline,
        )?;

        let data_dir = directory_path.join("data");
        let config_path = directory_path.join("broker.toml");
        let config = broker_config(&options, name_server.address, &data_dir)?;
        std::fs::write(&config_path, config)
            .map_err(|source| LoadError::io("writing the broker config", &config_path, source))?;
        let config_argument = config_path.to_string_lossy().into_owned();
        let broker_log = directory_path.join("broker.log");
        let broker = ServerProcess::start(
            "broker",
            &executable,
            &["serve-broker", "--config", &config_argument],
            &directory_path,
            &broker_log,
            options.start_deadline,
        )
        .map_err(|error| match direct_io_refusal(&broker_log) {
            Some(line) => LoadError::DirectIoUnsupported {
                data_dir: data_dir.clone(),
                line,
            },
            None => error,
        })?;

        wait_for_route(
            name_server.address,
            &options.topic,
            options.queue_count,
            options.start_deadline,
        )?;
        tracing::debug!(
            name_server = %name_server.address,
            broker = %broker.address,
            directory = %directory_path.display(),
            "local cluster serving"
        );
        Ok(LocalCluster {
            broker,
            name_server,
            directory,
            topic: options.topic,
            queue_count: options.queue_count,
            stop_deadline: options.stop_deadline,
        })
    }

    /// Where the name server listens.
    pub fn name_server_address(&self) -> SocketAddr {
        self.name_server.address
    }

    /// Where the broker listens.
    pub fn broker_address(&self) -> SocketAddr {
        self.broker.address
    }

    /// The broker's name, as routes and acknowledgements name it.
    pub fn broker_name(&self) -> &str {
        BROKER_NAME
    }

    /// The topic created at start.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its queues.
    pub fn queue_count(&self) -> u32 {
        self.queue_count
    }

    /// The cluster's directory (config, logs, `data/`).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// An error if either server has exited (it should serve until [`LocalCluster::stop`]).
    pub fn check_running(&mut self) -> Result<(), LoadError> {
        for process in [&mut self.broker, &mut self.name_server] {
            if let Some(status) = process.exit_status()? {
                return Err(LoadError::ServerExited {
                    what: process.what,
                    status,
                    log_tail: process.log_tail(),
                });
            }
        }
        Ok(())
    }

    /// Stops the broker, then the name server, each with SIGTERM and requiring exit status
    /// 0, then removes the directory. If a server does not stop cleanly, the directory is
    /// kept and the error names it.
    pub fn stop(self) -> Result<(), LoadError> {
        let LocalCluster {
            mut broker,
            mut name_server,
            directory,
            stop_deadline,
            ..
        } = self;
        let broker_stopped = broker.stop(stop_deadline);
        let name_server_stopped = name_server.stop(stop_deadline);
        match broker_stopped.and(name_server_stopped) {
            Ok(()) => {
                let path = directory.path().to_owned();
                directory
                    .close()
                    .map_err(|source| LoadError::io("removing the cluster directory", path, source))
            }
            Err(LoadError::ServerStop {
                what,
                reason,
                log_tail,
            }) => {
                let kept = directory.keep();
                Err(LoadError::ServerStop {
                    what,
                    reason: format!("{reason}; its logs and data are kept in {}", kept.display()),
                    log_tail,
                })
            }
            Err(other) => Err(other),
        }
    }
}

/// One server child process.
#[derive(Debug)]
struct ServerProcess {
    what: &'static str,
    /// `None` once reaped.
    child: Option<Child>,
    address: SocketAddr,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `executable arguments` in `directory` with stderr appended to `log_path`, and
    /// waits up to `deadline` for its `listening on ADDR` line.
    fn start(
        what: &'static str,
        executable: &Path,
        arguments: &[&str],
        directory: &Path,
        log_path: &Path,
        deadline: Duration,
    ) -> Result<ServerProcess, LoadError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|source| LoadError::io("creating the log", log_path, source))?;
        let mut command = Command::new(executable);
        command
            .args(arguments)
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec. It only calls
        // prctl(2) and getppid(2), which are async-signal-safe, and allocates nothing (the
        // errors are OS error codes).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody would stop us.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| LoadError::ServerStart {
            what,
            reason: format!("cannot run {}: {source}", executable.display()),
            log_tail: String::new(),
        })?;
        let mut process = ServerProcess {
            what,
            child: None,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path: log_path.to_owned(),
        };
        let stdout = child.stdout.take();
        process.child = Some(child);
        let Some(stdout) = stdout else {
            return Err(process.start_error("its stdout was not captured".into()));
        };

        // A thread reads stdout for the whole life of the process, so a later line never
        // meets a closed pipe.
        let (line_sender, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{what} stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Nobody listens once the address was read: keep draining anyway.
                    let _ = line_sender.send(line);
                }
            })
            .map_err(|error| process.start_error(format!("cannot read its output: {error}")))?;

        let started = Instant::now();
        let mut other_lines = Vec::new();
        loop {
            let remaining = deadline.saturating_sub(started.elapsed());
            match lines.recv_timeout(remaining) {
                Ok(line) => match line.trim().strip_prefix(LISTENING_PREFIX) {
                    Some(address) => {
                        process.address = address.parse().map_err(|error| {
                            process.start_error(format!(
                                "it printed {line:?}, which is not an address: {error}"
                            ))
                        })?;
                        return Ok(process);
                    }
                    None => other_lines.push(line),
                },
                Err(RecvTimeoutError::Disconnected) => {
                    let status = process.wait_for_exit(EXIT_AFTER_CLOSE_DEADLINE)?;
                    let status = status.map_or("did not exit".to_owned(), |status| {
                        format!("exited with {status}")
                    });
                    return Err(process.start_error(format!(
                        "it {status} before printing `{LISTENING_PREFIX}ADDR` (stdout: \
                         {other_lines:?})"
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {
                    process.kill();
                    return Err(process.start_error(format!(
                        "it did not print `{LISTENING_PREFIX}ADDR` within {deadline:?} (stdout: \
                         {other_lines:?}); killed it"
                    )));
                }
            }
        }
    }

    fn start_error(&self, reason: String) -> LoadError {
        LoadError::ServerStart {
            what: self.what,
            reason,
            log_tail: self.log_tail(),
        }
    }

    /// Sends SIGTERM and waits up to `deadline` for exit status 0.
    fn stop(&mut self, deadline: Duration) -> Result<(), LoadError> {
        let stop_error = |process: &ServerProcess, reason: String| LoadError::ServerStop {
            what: process.what,
            reason,
            log_tail: process.log_tail(),
        };
        let Some(child) = &self.child else {
            return Err(stop_error(self, "it was not running".into()));
        };
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return Err(stop_error(
                self,
                format!("pid {} does not fit pid_t", child.id()),
            ));
        };
        // SAFETY: kill(2) on our own child, which has not been reaped, so the pid is still
        // ours (a zombie at worst).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            let error = io::Error::last_os_error();
            return Err(stop_error(self, format!("cannot send SIGTERM: {error}")));
        }
        match self.wait_for_exit(deadline)? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(stop_error(
                self,
                format!("it exited with {status} on SIGTERM"),
            )),
            None => {
                self.kill();
                Err(stop_error(
                    self,
                    format!("it did not exit within {deadline:?} of SIGTERM; killed it"),
                ))
            }
        }
    }

    /// Its exit status if it has exited (reaping it), `None` while it runs.
    fn exit_status(&mut self) -> Result<Option<ExitStatus>, LoadError> {
        let Some(child) = &mut self.child else {
            return Ok(None);
        };
        let status = child.try_wait().map_err(|source| {
            LoadError::io("waiting for the local server", &self.log_path, source)
        })?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits up to `deadline` for the exit; `None` if it still runs.
    fn wait_for_exit(&mut self, deadline: Duration) -> Result<Option<ExitStatus>, LoadError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(Some(status));
            }
            if started.elapsed() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(EXIT_POLL_PAUSE);
        }
    }

    /// SIGKILL and reap, ignoring errors (it may be gone already).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The broker's config file for `options`, checked with the broker's own validation.
fn broker_config(
    options: &LocalClusterOptions,
    name_server: SocketAddr,
    data_dir: &Path,
) -> Result<String, LoadError> {
    let invalid = |reason: String| LoadError::ClusterOptions { reason };
    let data_dir = data_dir.to_str().ok_or_else(|| {
        invalid(format!(
            "the data directory {} is not UTF-8, which a TOML config cannot hold",
            data_dir.display()
        ))
    })?;
    let segment_size_bytes = i64::try_from(options.segment_size_bytes).map_err(|_| {
        invalid(format!(
            "segment size {} is too large",
            options.segment_size_bytes
        ))
    })?;
    let mut storage = Table::new();
    storage.insert("data_dir".into(), data_dir.into());
    storage.insert(
        "flush".into(),
        match options.flush {
            FlushMode::Sync => "sync",
            FlushMode::Async => "async",
        }
        .into(),
    );
    storage.insert("segment_size_bytes".into(), segment_size_bytes.into());
    let mut topic = Table::new();
    topic.insert("name".into(), options.topic.as_str().into());
    topic.insert("queues".into(), i64::from(options.queue_count).into());

    let mut root = Table::new();
    root.insert("cluster".into(), CLUSTER_NAME.into());
    root.insert("broker_name".into(), BROKER_NAME.into());
    root.insert("listen_address".into(), "127.0.0.1:0".into());
    root.insert(
        "name_servers".into(),
        Value::Array(vec![name_server.to_string().into()]),
    );
    root.insert("shard_count".into(), i64::from(options.shard_count).into());
    root.insert("storage".into(), Value::Table(storage));
    root.insert("topics".into(), Value::Array(vec![Value::Table(topic)]));
    let text = toml::to_string(&root).map_err(|error| LoadError::Serialize {
        what: "the broker config",
        reason: error.to_string(),
    })?;
    spillway_broker::BrokerConfig::from_toml_str(&text)
        .map_err(|error| invalid(error.to_string()))?;
    Ok(text)
}

/// Asks the name server for `topic`'s route until it lists [`BROKER_NAME`] with
/// `queue_count` queues and a member, or `deadline` passes.
fn wait_for_route(
    name_server: SocketAddr,
    topic: &str,
    queue_count: u32,
    deadline: Duration,
) -> Result<(), LoadError> {
    let started = Instant::now();
    loop {
        let last = match topic_route(name_server, topic) {
            Ok(route) => {
                let ready = route.brokers.iter().any(|broker| {
                    broker.broker_name == BROKER_NAME
                        && broker.queue_count == queue_count
                        && !broker.members.is_empty()
                });
                if ready {
                    return Ok(());
                }
                format!("the route lists {:?}", route.brokers)
            }
            Err(reason) => reason,
        };
        if started.elapsed() >= deadline {
            return Err(LoadError::RouteTimeout {
                topic: topic.to_owned(),
                waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                reason: last,
            });
        }
        std::thread::sleep(ROUTE_POLL_PAUSE);
    }
}

/// One `GetTopicRoute` request on a new connection; the error is a description.
fn topic_route(name_server: SocketAddr, topic: &str) -> Result<GetTopicRouteResponse, String> {
    let request_id = RequestId(1);
    let mut stream = TcpStream::connect_timeout(&name_server, ROUTE_REQUEST_TIMEOUT)
        .map_err(|error| format!("connect to {name_server}: {error}"))?;
    stream
        .set_read_timeout(Some(ROUTE_REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(ROUTE_REQUEST_TIMEOUT)))
        .map_err(|error| format!("socket timeouts: {error}"))?;
    let request = GetTopicRouteRequest {
        topic: topic.to_owned(),
    };
    let mut output = BytesMut::new();
    FrameEncoder::new()
        .encode(
            &mut output,
            Envelope::request(GetTopicRouteRequest::OPCODE, request_id),
            &request,
            &[],
        )
        .map_err(|error| format!("encode the route request: {error}"))?;
    stream
        .write_all(&output)
        .map_err(|error| format!("send the route request: {error}"))?;

    let decoder = FrameDecoder::new();
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 16 << 10];
    let frame = loop {
        if let Some(frame) = decoder
            .decode(&mut input)
            .map_err(|error| format!("the name server sent a bad frame: {error}"))?
        {
            if frame.request_id() == request_id || frame.request_id() == RequestId::NONE {
                break frame;
            }
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the name server closed the connection".into()),
            Ok(read) => input.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(format!("read the route response: {error}")),
        }
    };
    match frame.error_code() {
        Ok(ErrorCode::Ok) => frame
            .deserialize_header::<GetTopicRouteResponse>()
            .map_err(|error| format!("the route response does not decode: {error}")),
        Ok(code) => {
            let message = frame
                .error_detail()
                .map(|detail| detail.message.to_string())
                .unwrap_or_default();
            Err(format!("{code}: {message}"))
        }
        Err(unknown) => Err(format!("unknown error code: {unknown:?}")),
    }
}

/// The line of the broker's log saying the file system refuses O_DIRECT, if any.
fn direct_io_refusal(log_path: &Path) -> Option<String> {
    let text = std::fs::read(log_path).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .find(|line| line.contains(DIRECT_IO_REFUSAL))
        .map(|line| line.trim().to_owned())
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path`, headed by its path.
fn log_tail(path: &Path) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => return format!("(cannot read the log {}: {error})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!(
        "--- last {} lines of {}:\n{}\n---",
        tail.len(),
        path.display(),
        tail.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_config_carries_the_options_and_validates() {
        let options = LocalClusterOptions {
            shard_count: 3,
            flush: FlushMode::Async,
            segment_size_bytes: 64 << 20,
            topic: "orders".into(),
            queue_count: 5,
            ..LocalClusterOptions::default()
        };
        let text = broker_config(
            &options,
            "127.0.0.1:9876".parse().unwrap(),
            Path::new("/data/x"),
        )
        .unwrap();
        let config = spillway_broker::BrokerConfig::from_toml_str(&text).unwrap();
        assert_eq!(config.shard_count(), 3);
        assert_eq!(config.storage.flush, FlushMode::Async);
        assert_eq!(config.storage.segment_size_bytes, 64 << 20);
        assert_eq!(config.storage.data_dir, Path::new("/data/x"));
        assert_eq!(config.topics[0].name, "orders");
        assert_eq!(config.topics[0].queues, 5);
        assert_eq!(config.broker_name, BROKER_NAME);
        assert_eq!(config.listen_address.to_string(), "127.0.0.1:0");
        assert_eq!(config.name_servers[0].to_string(), "127.0.0.1:9876");
    }

    #[test]
    fn options_the_broker_would_refuse_fail_before_anything_starts() {
        let options = LocalClusterOptions {
            segment_size_bytes: 12_345,
            ..LocalClusterOptions::default()
        };
        let error = broker_config(&options, "127.0.0.1:9876".parse().unwrap(), Path::new("/d"))
            .unwrap_err();
        assert!(matches!(error, LoadError::ClusterOptions { .. }), "{error}");
        assert!(error.to_string().contains("segment_size_bytes"), "{error}");
    }

    #[test]
    fn the_direct_io_refusal_is_found_in_the_log() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("broker.log");
        std::fs::write(
            &log,
            "INFO starting\nspillway-perf serve-broker: shard 0: O_DIRECT is not supported \
             for /dev/shm/x/data/shard-0/.direct-io-probe (tmpfs ...)\n",
        )
        .unwrap();
        let line = direct_io_refusal(&log).unwrap();
        assert!(line.starts_with("spillway-perf serve-broker: shard 0: O_DIRECT"));
        std::fs::write(&log, "INFO starting\n").unwrap();
        assert_eq!(direct_io_refusal(&log), None);
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("x.log");
        let text: String = (0..50).map(|line| format!("line {line}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.contains("last 20 lines"), "{tail}");
        assert!(
            tail.contains("line 30\n") && tail.contains("line 49\n"),
            "{tail}"
        );
        assert!(!tail.contains("line 29\n"), "{tail}");
    }
}
