//! Cross-process tests of `spillway-nameserver`: each starts the real binary on
//! 127.0.0.1:0, reads the bound address from its `listening on` line, and talks to it with
//! blocking std sockets and the wire crate's encoder and decoder, as a broker or a client
//! would. Waits are polls against a deadline, never bare sleeps used as synchronisation.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::{Rng, SeedableRng};
use spillway_wire::message::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, GetClusterInfoRequest, GetClusterInfoResponse,
    GetQueueOffsetsRequest, GetQueueOffsetsResponse, GetTopicRouteRequest, GetTopicRouteResponse,
    RegisterBrokerRequest, RegisterBrokerResponse, ShardLayout, TopicConfig,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use spillway_wire::{
    BrokerId, Envelope, ErrorCode, Frame, FrameDecoder, FrameEncoder, Opcode, QueueId, RequestId,
    ShardId, WireHeader, MAGIC, VERSION,
};

/// Longest any single wait in these tests may take before it counts as a failure.
const DEADLINE: Duration = Duration::from_secs(10);
/// Socket read timeout, so a silent server fails a test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A running name server, killed when dropped.
struct NameServer {
    /// `None` once `stop_with` has handed it to its waiting thread.
    child: Option<Child>,
    address: SocketAddr,
}

impl NameServer {
    fn start(extra_arguments: &[&str]) -> NameServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spillway-nameserver"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_arguments)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start spillway-nameserver");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("a socket address");
        NameServer {
            child: Some(child),
            address,
        }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.address).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            encoder: FrameEncoder::new(),
            decoder: FrameDecoder::new(),
            input: BytesMut::new(),
            next_request_id: 1,
        }
    }

    /// Sends `signal` and waits (with the deadline) for the exit status.
    fn stop_with(mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        let sent = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(sent, 0, "kill failed");
        // Wait for the exit on another thread, so this one waits on a channel with a
        // deadline instead of polling.
        let (exited, exit) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait().expect("wait"));
        });
        exit.recv_timeout(DEADLINE)
            .expect("name server did not exit")
    }
}

/// Calls `attempt` until it gives a value, failing after the deadline. The name server has
/// no way to tell a client that something changed, so asking again is the only way to wait
/// for a change (the shared harness paces the asking).
fn poll_until<T>(what: &str, attempt: impl FnMut() -> Option<T>) -> T {
    spillway_tests::wait::poll_until(what, DEADLINE, attempt)
}

impl Drop for NameServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking wire client.
struct Client {
    stream: TcpStream,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    input: BytesMut,
    next_request_id: u64,
}

/// An error response: its code and message.
type Refused = (ErrorCode, String);

impl Client {
    fn request<Q: WireHeader, R: WireHeader>(&mut self, request: &Q) -> Result<R, Refused> {
        let request_id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        let mut output = BytesMut::new();
        self.encoder
            .encode(
                &mut output,
                Envelope::request(Q::OPCODE, request_id),
                request,
                &[],
            )
            .expect("encode");
        self.stream.write_all(&output).expect("send");
        let frame = self
            .read_frame()
            .expect("a response, not a closed connection");
        assert_eq!(frame.request_id(), request_id);
        assert_eq!(frame.envelope().opcode_number(), Q::OPCODE.as_u16());
        match frame.error_code().expect("a known error code") {
            ErrorCode::Ok => Ok(frame.deserialize_header::<R>().expect("response header")),
            code => Err((
                code,
                frame.error_detail().expect("detail").message.to_string(),
            )),
        }
    }

    /// The next frame, or `None` once the server closed (or reset) the connection.
    fn read_frame(&mut self) -> Option<Frame> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.input).expect("valid frames") {
                return Some(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(read) => self.input.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }
}

fn registration(broker_name: &str, address: &str, topics: &[(&str, u32)]) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster: "main".into(),
        broker_name: broker_name.into(),
        broker_id: BrokerId::MASTER,
        address: address.into(),
        shard_count: 2,
        topics_version: 1,
        topics: topics
            .iter()
            .map(|(topic, queue_count)| TopicConfig {
                topic: (*topic).into(),
                queue_count: *queue_count,
                shard_layout: ShardLayout::RoundRobin,
            })
            .collect(),
    }
}

fn route(client: &mut Client, topic: &str) -> Result<GetTopicRouteResponse, Refused> {
    client.request::<_, GetTopicRouteResponse>(&GetTopicRouteRequest {
        topic: topic.into(),
    })
}

fn heartbeat(client: &mut Client, broker_name: &str) -> BrokerHeartbeatResponse {
    client
        .request(&BrokerHeartbeatRequest {
            cluster: "main".into(),
            broker_name: broker_name.into(),
            broker_id: BrokerId::MASTER,
            topics_version: 1,
        })
        .expect("heartbeat answered")
}

/// Polls `route(topic)` until `done` holds, failing after the deadline.
fn wait_for_route(
    client: &mut Client,
    topic: &str,
    done: impl Fn(&Result<GetTopicRouteResponse, Refused>) -> bool,
) -> Duration {
    let started = Instant::now();
    poll_until(&format!("a change of the route of {topic}"), || {
        done(&route(client, topic)).then(|| started.elapsed())
    })
}

#[test]
fn route_appears_after_registration_with_address_queues_and_layout() {
    let server = NameServer::start(&[]);
    let mut broker = server.connect();
    let mut client = server.connect();

    let refused = route(&mut client, "orders").unwrap_err();
    assert_eq!(refused.0, ErrorCode::TopicNotFound);

    let mut request = registration("broker-a", "127.0.0.1:10911", &[("orders", 8)]);
    request.topics.push(TopicConfig {
        topic: "audit".into(),
        queue_count: 2,
        shard_layout: ShardLayout::Pinned(vec![ShardId(1), ShardId(0)]),
    });
    let response: RegisterBrokerResponse = broker.request(&request).unwrap();
    assert_eq!(response.master_address, None);

    let orders = route(&mut client, "orders").unwrap();
    assert_eq!(orders.brokers.len(), 1);
    let group = &orders.brokers[0];
    assert_eq!(group.broker_name, "broker-a");
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].broker_id, BrokerId::MASTER);
    assert_eq!(group.members[0].address, "127.0.0.1:10911");
    assert_eq!((group.shard_count, group.queue_count), (2, 8));
    assert_eq!(group.shard_layout, ShardLayout::RoundRobin);
    let audit = route(&mut client, "audit").unwrap();
    assert_eq!(
        audit.brokers[0].shard_layout,
        ShardLayout::Pinned(vec![ShardId(1), ShardId(0)])
    );

    let info: GetClusterInfoResponse = client.request(&GetClusterInfoRequest {}).unwrap();
    assert_eq!(info.clusters.len(), 1);
    assert_eq!(info.clusters[0].cluster, "main");
    assert_eq!(info.clusters[0].broker_groups[0].broker_name, "broker-a");

    // A refused registration is a typed error, and the connection goes on.
    let mut invalid = registration("broker-b", "127.0.0.1:10912", &[("orders", 0)]);
    invalid.broker_id = BrokerId(0);
    let refused = broker
        .request::<_, RegisterBrokerResponse>(&invalid)
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::InvalidArgument, "{}", refused.1);
    assert!(!heartbeat(&mut broker, "broker-a").registration_needed);
}

#[test]
fn heartbeats_keep_a_broker_and_silence_removes_it_after_the_timeout() {
    // The timeout is long next to the 60 ms heartbeats so a loaded CI machine that stalls
    // this thread for a few hundred ms cannot expire the live broker.
    let server = NameServer::start(&["--broker-timeout-ms", "1500", "--scan-interval-ms", "50"]);
    let mut broker_a = server.connect();
    let mut broker_b = server.connect();
    let mut client = server.connect();
    assert!(heartbeat(&mut broker_a, "broker-a").registration_needed);
    broker_a
        .request::<_, RegisterBrokerResponse>(&registration(
            "broker-a",
            "127.0.0.1:10911",
            &[("orders", 4)],
        ))
        .unwrap();
    broker_b
        .request::<_, RegisterBrokerResponse>(&registration(
            "broker-b",
            "127.0.0.1:10921",
            &[("orders", 4)],
        ))
        .unwrap();
    let registered_at = Instant::now();
    assert_eq!(route(&mut client, "orders").unwrap().brokers.len(), 2);

    // broker-a heartbeats every 60 ms (well inside 1500 ms); broker-b falls silent ("killed").
    // Within 4 timeouts broker-b must be gone and broker-a still there.
    let names = |route: &Result<GetTopicRouteResponse, Refused>| -> Vec<String> {
        match route {
            Ok(route) => route
                .brokers
                .iter()
                .map(|b| b.broker_name.clone())
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    // broker-a heartbeats on every attempt, as a live broker does on its timer.
    poll_until("the expiry of broker-b", || {
        assert!(!heartbeat(&mut broker_a, "broker-a").registration_needed);
        let current = names(&route(&mut client, "orders"));
        assert!(current.contains(&"broker-a".to_owned()), "broker-a expired");
        (current == ["broker-a"]).then_some(())
    });
    assert!(
        registered_at.elapsed() >= Duration::from_millis(1500),
        "broker-b expired before its timeout"
    );
    // Keep broker-a alive over several more timeouts.
    spillway_tests::wait::keep_checking(Duration::from_millis(3200), || {
        assert!(!heartbeat(&mut broker_a, "broker-a").registration_needed);
        assert_eq!(names(&route(&mut client, "orders")), ["broker-a"]);
    });

    // Now broker-a falls silent too: the topic disappears, and a late heartbeat is told to
    // register again.
    drop(broker_a);
    let waited = wait_for_route(&mut client, "orders", |route| {
        matches!(route, Err((ErrorCode::TopicNotFound, _)))
    });
    assert!(waited < DEADLINE);
    assert!(heartbeat(&mut broker_b, "broker-b").registration_needed);
}

#[test]
fn unregister_removes_the_broker() {
    let server = NameServer::start(&[]);
    let mut broker = server.connect();
    let mut client = server.connect();
    broker
        .request::<_, RegisterBrokerResponse>(&registration(
            "broker-a",
            "127.0.0.1:10911",
            &[("orders", 4)],
        ))
        .unwrap();
    assert!(route(&mut client, "orders").is_ok());
    let mut request = UnregisterBrokerRequest {
        cluster: "main".into(),
        broker_name: "broker-a".into(),
        broker_id: BrokerId::MASTER,
        address: "127.0.0.1:9999".into(),
    };
    // A stale unregister (other address) leaves it registered.
    broker
        .request::<_, UnregisterBrokerResponse>(&request)
        .unwrap();
    assert!(route(&mut client, "orders").is_ok());
    request.address = "127.0.0.1:10911".into();
    broker
        .request::<_, UnregisterBrokerResponse>(&request)
        .unwrap();
    assert_eq!(
        route(&mut client, "orders").unwrap_err().0,
        ErrorCode::TopicNotFound
    );
    let info: GetClusterInfoResponse = client.request(&GetClusterInfoRequest {}).unwrap();
    assert!(info.clusters.is_empty());
}

#[test]
fn opcode_not_served_is_refused_and_the_connection_goes_on() {
    let server = NameServer::start(&[]);
    let mut client = server.connect();
    let refused = client
        .request::<_, GetQueueOffsetsResponse>(&GetQueueOffsetsRequest {
            topic: "orders".into(),
            queue_id: QueueId(0),
        })
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::UnknownOpcode);
    assert_eq!(
        route(&mut client, "orders").unwrap_err().0,
        ErrorCode::TopicNotFound
    );
}

/// Sends `bytes`, then reads until the server closes: at most one frame may arrive, a
/// connection error with `expected` (request id 0). Returns how many arrived (0 only if the
/// close raced the response, e.g. a reset because of bytes the server never read).
fn expect_connection_error(server: &NameServer, bytes: &[u8], expected: ErrorCode) -> usize {
    let mut client = server.connect();
    client.stream.write_all(bytes).expect("send");
    let mut frames = 0;
    while let Some(frame) = client.read_frame() {
        assert_eq!(frame.request_id(), RequestId::NONE);
        assert_eq!(frame.error_code(), Ok(expected));
        frames += 1;
    }
    assert!(frames <= 1, "{frames} responses to a broken stream");
    frames
}

#[test]
fn garbage_and_oversize_frames_close_that_connection_only() {
    let server = NameServer::start(&[]);
    let mut survivor = server.connect();

    let seed: u64 = rand::random();
    println!("garbage seed {seed} (fixed in the test to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut garbage = vec![0u8; 512];
    rng.fill(&mut garbage[..]);
    // Not the magic, so the verdict comes at once rather than after more bytes.
    garbage[4..6].copy_from_slice(&(!MAGIC).to_le_bytes());
    expect_connection_error(&server, &garbage, ErrorCode::BadFrame);

    // A well-formed prefix announcing a 1 GiB frame: refused before anything is buffered.
    let mut oversize = Vec::new();
    oversize.extend_from_slice(&((1u32 << 30) - 4).to_le_bytes());
    oversize.extend_from_slice(&MAGIC.to_le_bytes());
    oversize.push(VERSION);
    oversize.push(1);
    // The server read all 8 bytes, so its close is clean and the response arrives.
    assert_eq!(
        expect_connection_error(&server, &oversize, ErrorCode::FrameTooLarge),
        1
    );

    // A client that connected before, and one that connects after, are both served.
    assert_eq!(
        route(&mut survivor, "orders").unwrap_err().0,
        ErrorCode::TopicNotFound
    );
    let mut next = server.connect();
    let info: GetClusterInfoResponse = next.request(&GetClusterInfoRequest {}).unwrap();
    assert!(info.clusters.is_empty());
}

#[test]
fn connections_over_the_limit_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("nameserver.toml");
    std::fs::write(&path, "max_connections = 1\n").unwrap();
    let server = NameServer::start(&["--config", path.to_str().unwrap()]);
    let mut first = server.connect();
    assert!(route(&mut first, "orders").is_err());
    assert_eq!(
        expect_connection_error(&server, &[], ErrorCode::ServiceUnavailable),
        1
    );
    drop(first);
    // Once the first is gone its slot frees up (the server notices the close first).
    poll_until("a freed connection slot", || {
        let mut client = server.connect();
        client
            .stream
            .write_all(&{
                let mut output = BytesMut::new();
                FrameEncoder::new()
                    .encode(
                        &mut output,
                        Envelope::request(Opcode::GetClusterInfo, RequestId(1)),
                        &GetClusterInfoRequest {},
                        &[],
                    )
                    .unwrap();
                output
            })
            .unwrap();
        let frame = client.read_frame().expect("an answer");
        if frame.error_code() == Ok(ErrorCode::Ok) {
            return Some(());
        }
        assert_eq!(frame.error_code(), Ok(ErrorCode::ServiceUnavailable));
        None
    });
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let server = NameServer::start(&[]);
        let mut client = server.connect();
        assert!(route(&mut client, "orders").is_err());
        let status = server.stop_with(signal);
        assert_eq!(status.code(), Some(0), "signal {signal}");
    }
}

#[test]
fn unknown_config_key_is_refused_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("nameserver.toml");
    std::fs::write(&path, "broker_timeout_ms = 300\nscan_intervall_ms = 50\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_spillway-nameserver"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scan_intervall_ms"), "{stderr}");
    assert!(output.stdout.is_empty());
}
