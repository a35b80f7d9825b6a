//! [`RpcConnection`]: one request, one response, over a glommio TCP connection to a peer
//! (a name server today; other brokers later).
//!
//! # Why it is this small
//!
//! What the broker asks its peers is rare and small (a registration, a heartbeat every few
//! seconds, an unregistration at shutdown), so a connection carries one request at a time:
//! [`RpcConnection::call`] encodes the request, writes it, and reads until the response with
//! the same request id arrives. No pipelining, no background reader task, no shared state:
//! the caller owns the connection and awaits each call. Request ids grow per connection and
//! start at 1 (0 is reserved for one-way frames and connection errors).
//!
//! # Failures
//!
//! * A response whose error code is not `Ok` is [`RpcError::Refused`]: the peer understood
//!   and said no. The connection stays usable, except for a connection-level error (request
//!   id 0), after which the peer closes it.
//! * Anything else (timeout, I/O error, a byte stream that no longer splits into frames, the
//!   peer closing) leaves the stream in an unknown state: a late response, a half-written
//!   request. The connection is then marked broken and every later call fails with
//!   [`RpcError::Closed`]: drop it and connect again.
//! * Frames that are not the awaited response (another request id, a request sent to us)
//!   are skipped; the call's timeout bounds how long that can go on.
//!
//! # Blocking name resolution
//!
//! [`RpcConnection::connect`] takes `host:port`. An IP literal is parsed without any system
//! call, but a DNS name is resolved with [`std::net::ToSocketAddrs`], which **blocks the
//! executor's thread** (getaddrinfo) for as long as the resolver takes; the connect timeout
//! cannot bound it. That is acceptable where this is used: shard 0 resolving name servers
//! once per connection (at start, and on reconnect after a failure), not per request. Code on
//! the data path must not connect to DNS names this way.
//!
//! This module knows nothing about what is asked: it moves [`WireHeader`]s and never looks
//! at payloads (requests are sent without one; a response's payload is ignored).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spillway_wire::{
    Envelope, ErrorCode, Frame, FrameDecoder, FrameEncoder, FrameKind, HeaderRole, Opcode,
    RequestId, WireError, WireHeader, DEFAULT_MAX_FRAME_BYTES,
};

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// What was being done when an [`RpcError`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcOperation {
    /// Resolving the address and opening the connection.
    Connect,
    /// A request with this opcode and the wait for its response.
    Call(Opcode),
}

impl fmt::Display for RpcOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcOperation::Connect => f.write_str("connect"),
            RpcOperation::Call(opcode) => write!(f, "{opcode:?} request"),
        }
    }
}

/// Why a connect or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The peer answered with an error code: it understood the request and refused it.
    #[error("refused with {code}: {message}")]
    Refused {
        /// The code it answered with.
        code: ErrorCode,
        /// Its explanation (from the response's error detail).
        message: String,
    },
    /// The peer answered with an error code this build does not know (a newer peer). Like
    /// every unknown code, a failure.
    #[error("refused with unknown error code {code}: {message}")]
    RefusedWithUnknownCode {
        /// The code number it answered with.
        code: u16,
        /// Its explanation (from the response's error detail).
        message: String,
    },
    /// The operation did not finish in time. After a timed-out call the connection is
    /// broken (a late response or a half-written request may be in the stream).
    #[error("{operation} to {address} timed out after {} ms", timeout.as_millis())]
    Timeout {
        /// What timed out.
        operation: RpcOperation,
        /// The peer.
        address: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// The operating system refused: resolving, connecting, reading or writing.
    #[error("{operation} to {address} failed: {source}")]
    Io {
        /// What failed.
        operation: RpcOperation,
        /// The peer.
        address: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Encoding the request failed, or the peer sent bytes that are not valid frames, or a
    /// response that is not the expected header.
    #[error("wire protocol error: {0}")]
    Wire(#[from] WireError),
    /// The peer closed the connection, or an earlier failure left it unusable.
    #[error("the connection is closed")]
    Closed,
}

/// A connection to one peer, carrying one request at a time. See the module docs.
pub struct RpcConnection {
    stream: TcpStream,
    /// `host:port` as given to connect, for errors and logs.
    address: String,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    /// Received bytes not yet decoded into frames.
    input: BytesMut,
    /// The request being sent.
    output: BytesMut,
    chunk: Vec<u8>,
    next_request_id: u64,
    /// Set after a failure that leaves the stream in an unknown state.
    broken: bool,
}

impl fmt::Debug for RpcConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcConnection")
            .field("address", &self.address)
            .field("next_request_id", &self.next_request_id)
            .field("broken", &self.broken)
            .finish()
    }
}

impl RpcConnection {
    /// Connects to `address` (`host:port`, the host an IP address or a DNS name, resolved
    /// here, blocking: see the module docs), trying each resolved address in turn, all
    /// within `timeout`. Frames are limited to [`DEFAULT_MAX_FRAME_BYTES`] both ways.
    pub async fn connect(address: &str, timeout: Duration) -> Result<RpcConnection, RpcError> {
        RpcConnection::connect_with_max_frame_bytes(address, timeout, DEFAULT_MAX_FRAME_BYTES).await
    }

    /// Like [`RpcConnection::connect`], with frames (requests sent and responses received)
    /// limited to `max_frame_bytes`, length prefix included.
    ///
    /// # Panics
    ///
    /// If `max_frame_bytes` is outside the range the wire crate allows
    /// ([`FrameDecoder::with_max_frame_bytes`]): a configuration bug, which config
    /// validation rules out.
    pub async fn connect_with_max_frame_bytes(
        address: &str,
        timeout: Duration,
        max_frame_bytes: usize,
    ) -> Result<RpcConnection, RpcError> {
        let encoder = FrameEncoder::with_max_frame_bytes(max_frame_bytes);
        let decoder = FrameDecoder::with_max_frame_bytes(max_frame_bytes);
        let stream = open(address, timeout).await?;
        // Requests are small and answered at once: do not let Nagle hold them back.
        stream.set_nodelay(true).map_err(|source| RpcError::Io {
            operation: RpcOperation::Connect,
            address: address.to_owned(),
            source: source.into(),
        })?;
        Ok(RpcConnection {
            stream,
            address: address.to_owned(),
            encoder,
            decoder,
            input: BytesMut::new(),
            output: BytesMut::new(),
            chunk: vec![0; READ_CHUNK_BYTES],
            next_request_id: 1,
            broken: false,
        })
    }

    /// The peer's address, as given to connect.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether a failure has left this connection unusable (every call then fails with
    /// [`RpcError::Closed`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends `request` (the opcode is `Req`'s) and waits up to `timeout` for its response,
    /// deserialized as `Resp`. `Req` and `Resp` must be the request and response headers of
    /// the same operation (checked at compile time).
    pub async fn call<Req: WireHeader, Resp: WireHeader>(
        &mut self,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        const {
            assert!(matches!(Req::ROLE, HeaderRole::Request));
            assert!(matches!(Resp::ROLE, HeaderRole::Response));
            assert!(Req::OPCODE.as_u16() == Resp::OPCODE.as_u16());
        }
        if self.broken {
            return Err(RpcError::Closed);
        }
        let operation = RpcOperation::Call(Req::OPCODE);
        let request_id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        self.output.clear();
        // Nothing was sent if encoding fails: the connection stays usable.
        self.encoder.encode(
            &mut self.output,
            Envelope::request(Req::OPCODE, request_id),
            request,
            &[],
        )?;
        let exchanged = within(timeout, self.exchange(operation, request_id)).await;
        let frame = match exchanged {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                self.broken = true;
                return Err(error);
            }
            None => {
                self.broken = true;
                return Err(RpcError::Timeout {
                    operation,
                    address: self.address.clone(),
                    timeout,
                });
            }
        };
        match frame.error_code() {
            Ok(ErrorCode::Ok) => Ok(frame.deserialize_header::<Resp>()?),
            Ok(code) => {
                if frame.request_id() == RequestId::NONE {
                    // A connection-level error: the peer closes the connection after it.
                    self.broken = true;
                }
                Err(RpcError::Refused {
                    code,
                    message: error_message(&frame),
                })
            }
            Err(unknown) => Err(RpcError::RefusedWithUnknownCode {
                code: unknown.0,
                message: error_message(&frame),
            }),
        }
    }

    /// Writes the encoded request and reads until its response (or a connection error)
    /// arrives.
    async fn exchange(
        &mut self,
        operation: RpcOperation,
        request_id: RequestId,
    ) -> Result<Frame, RpcError> {
        let io_error = |address: &str| {
            let address = address.to_owned();
            move |source| RpcError::Io {
                operation,
                address,
                source,
            }
        };
        self.stream
            .write_all(&self.output)
            .await
            .map_err(io_error(&self.address))?;
        self.stream.flush().await.map_err(io_error(&self.address))?;
        loop {
            while let Some(frame) = self.decoder.decode(&mut self.input)? {
                if is_answer(&frame, request_id) {
                    return Ok(frame);
                }
                tracing::debug!(
                    address = %self.address,
                    kind = %frame.kind(),
                    request_id = frame.request_id().0,
                    awaited = request_id.0,
                    "skipping a frame that does not answer the request"
                );
            }
            let read = self
                .stream
                .read(&mut self.chunk)
                .await
                .map_err(io_error(&self.address))?;
            if read == 0 {
                return Err(RpcError::Closed);
            }
            self.input.extend_from_slice(&self.chunk[..read]);
        }
    }
}

/// Whether `frame` is the response to `request_id`, or a connection-level error (request
/// id 0 with an error code) that ends every request on the connection.
fn is_answer(frame: &Frame, request_id: RequestId) -> bool {
    if frame.kind() != FrameKind::Response {
        return false;
    }
    let envelope = frame.envelope();
    envelope.request_id() == request_id
        || (envelope.request_id() == RequestId::NONE && envelope.error_code_number() != 0)
}

/// The message of an error response, or why it cannot be read.
fn error_message(frame: &Frame) -> String {
    match frame.error_detail() {
        Ok(detail) => detail.message.as_str().to_owned(),
        Err(error) => format!("(unreadable error detail: {error})"),
    }
}

/// Resolves `address` and connects to the first resolved address that accepts, within
/// `timeout` overall.
async fn open(address: &str, timeout: Duration) -> Result<TcpStream, RpcError> {
    let io_error = |source| RpcError::Io {
        operation: RpcOperation::Connect,
        address: address.to_owned(),
        source,
    };
    let timed_out = || RpcError::Timeout {
        operation: RpcOperation::Connect,
        address: address.to_owned(),
        timeout,
    };
    let deadline = Instant::now() + timeout;
    // Blocking for DNS names; an IP literal is only parsed (see the module docs).
    let candidates: Vec<SocketAddr> = address.to_socket_addrs().map_err(io_error)?.collect();
    let mut last_error = None;
    for candidate in candidates {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(candidate, remaining).await {
            Ok(stream) => return Ok(stream),
            Err(error) => {
                let error = io::Error::from(error);
                if error.kind() == io::ErrorKind::TimedOut {
                    return Err(timed_out());
                }
                tracing::debug!(address, %candidate, %error, "connect failed");
                last_error = Some(error);
            }
        }
    }
    Err(io_error(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address")
    })))
}

/// Runs `work` for at most `timeout`: `None` if the time ran out first (`work` is then
/// dropped, wherever it was).
pub(crate) async fn within<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
}

#[cfg(test)]
pub(crate) mod test_support {
    //! An in-process name server on its own glommio executor thread, and helpers to run a
    //! test body on an executor. Shared by this module's and `registration`'s tests.

    use std::future::Future;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
    use spillway_nameserver::{ConfigOverrides, NameServerConfig};

    /// Longest any wait in a test may take before it counts as a failure.
    pub(crate) const DEADLINE: Duration = Duration::from_secs(10);
    /// Pause between two looks at something a test is waiting for.
    pub(crate) const POLL_PAUSE: Duration = Duration::from_millis(20);

    /// Runs `body` to completion on a fresh glommio executor (its own thread).
    pub(crate) fn run<F, Fut, T>(body: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        LocalExecutorBuilder::default()
            .name("test")
            .spawn(body)
            .expect("spawn the test executor")
            .join()
            .expect("the test executor")
    }

    /// A loopback address with a port that was free a moment ago.
    ///
    /// `serve` prints the port it bound to stdout but does not return it, so the tests
    /// choose the port: bind port 0, note the port, close the listener. Another process may
    /// take the port in between (a race, rare on a test machine); the name server then
    /// fails to bind and [`TestNameServer::start_on`] says so.
    pub(crate) fn free_address() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        listener.local_addr().expect("bound address")
    }

    /// A name server serving on its own executor thread; stopped (and joined) when dropped.
    pub(crate) struct TestNameServer {
        pub(crate) address: SocketAddr,
        shutdown: Arc<AtomicBool>,
        thread: Option<ExecutorJoinHandle<std::io::Result<()>>>,
    }

    impl TestNameServer {
        /// A name server on a free loopback port, accepting connections.
        pub(crate) fn start() -> TestNameServer {
            TestNameServer::start_on(free_address())
        }

        /// A name server on `address`, accepting connections when this returns.
        pub(crate) fn start_on(address: SocketAddr) -> TestNameServer {
            let config = NameServerConfig::resolve(ConfigOverrides {
                listen: Some(address),
                broker_timeout_ms: Some(60_000),
                scan_interval_ms: Some(1_000),
                ..ConfigOverrides::default()
            })
            .expect("a valid name server config");
            let shutdown = Arc::new(AtomicBool::new(false));
            let flag = shutdown.clone();
            let thread = LocalExecutorBuilder::new(Placement::Unbound)
                .name("test-nameserver")
                .spawn(move || spillway_nameserver::server::serve(config, flag))
                .expect("spawn the name server executor");
            let server = TestNameServer {
                address,
                shutdown,
                thread: Some(thread),
            };
            // Poll (blocking: this runs before, or beside, the code under test) until the
            // listener accepts.
            let deadline = Instant::now() + super::test_support::DEADLINE;
            while TcpStream::connect(address).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the name server did not start on {address} (port taken?)"
                );
                std::thread::sleep(POLL_PAUSE);
            }
            server
        }

        /// `host:port` to connect to.
        pub(crate) fn endpoint(&self) -> String {
            self.address.to_string()
        }
    }

    impl Drop for TestNameServer {
        fn drop(&mut self) {
            self.shutdown.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let result = thread.join();
                if !std::thread::panicking() {
                    result
                        .expect("the name server executor")
                        .expect("the name server served");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use spillway_wire::message::{
        GetClusterInfoRequest, GetClusterInfoResponse, GetTopicRouteRequest, GetTopicRouteResponse,
    };

    use super::test_support::{free_address, run, TestNameServer};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn route_request(topic: &str) -> GetTopicRouteRequest {
        GetTopicRouteRequest {
            topic: topic.into(),
        }
    }

    /// A one-connection peer on a std thread: reads one request, writes what `answer`
    /// makes of its envelope, closes its side if `then_close`, and waits for the client to
    /// close (or the read timeout).
    fn scripted_peer(
        then_close: bool,
        answer: impl FnOnce(Envelope) -> BytesMut + Send + 'static,
    ) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(TIMEOUT))
                .expect("read timeout");
            let decoder = FrameDecoder::new();
            let mut input = BytesMut::new();
            let mut chunk = [0u8; 4096];
            let request = loop {
                if let Some(frame) = decoder.decode(&mut input).expect("a valid request") {
                    break frame;
                }
                let read = stream.read(&mut chunk).expect("read the request");
                assert!(read > 0, "the client closed before sending");
                input.extend_from_slice(&chunk[..read]);
            };
            stream
                .write_all(&answer(*request.envelope()))
                .expect("write the answer");
            if then_close {
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("close our side");
            }
            // Until the client is done (EOF) or the timeout.
            while matches!(stream.read(&mut chunk), Ok(read) if read > 0) {}
        });
        (address, thread)
    }

    fn cluster_info() -> GetClusterInfoResponse {
        GetClusterInfoResponse { clusters: vec![] }
    }

    #[test]
    fn call_returns_the_response_and_refusals_keep_the_connection() {
        let name_server = TestNameServer::start();
        let endpoint = name_server.endpoint();
        run(move || async move {
            let mut connection = RpcConnection::connect(&endpoint, TIMEOUT)
                .await
                .expect("connect");
            let refused = connection
                .call::<_, GetTopicRouteResponse>(&route_request("nowhere"), TIMEOUT)
                .await;
            match refused {
                Err(RpcError::Refused { code, message }) => {
                    assert_eq!(code, ErrorCode::TopicNotFound);
                    assert!(message.contains("nowhere"), "{message}");
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
            assert!(!connection.is_broken());
            let info: GetClusterInfoResponse = connection
                .call(&GetClusterInfoRequest {}, TIMEOUT)
                .await
                .expect("cluster info");
            assert_eq!(info, cluster_info());
            assert_eq!(connection.next_request_id, 3);
        });
    }

    #[test]
    fn connect_resolves_dns_names() {
        let name_server = TestNameServer::start();
        let endpoint = format!("localhost:{}", name_server.address.port());
        run(move || async move {
            let mut connection = RpcConnection::connect(&endpoint, TIMEOUT)
                .await
                .expect("connect by name");
            let info: GetClusterInfoResponse = connection
                .call(&GetClusterInfoRequest {}, TIMEOUT)
                .await
                .expect("cluster info");
            assert_eq!(info, cluster_info());
        });
    }

    #[test]
    fn connect_to_a_closed_port_is_an_io_error() {
        let address = free_address().to_string();
        run(move || async move {
            match RpcConnection::connect(&address, TIMEOUT).await {
                Err(RpcError::Io {
                    operation: RpcOperation::Connect,
                    source,
                    ..
                }) => assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused),
                other => panic!("expected a connect error, got {other:?}"),
            }
        });
    }

    #[test]
    fn connect_to_an_unresolvable_name_is_an_io_error() {
        run(|| async {
            let result = RpcConnection::connect("no-such-host.invalid:9876", TIMEOUT).await;
            assert!(
                matches!(
                    result,
                    Err(RpcError::Io {
                        operation: RpcOperation::Connect,
                        ..
                    })
                ),
                "{result:?}"
            );
        });
    }

    #[test]
    fn a_silent_peer_times_out_and_breaks_the_connection() {
        // The kernel completes the handshake from the backlog; nobody ever reads.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        run(move || async move {
            let mut connection = RpcConnection::connect(&address, TIMEOUT)
                .await
                .expect("connect");
            let timeout = Duration::from_millis(100);
            let result = connection
                .call::<_, GetClusterInfoResponse>(&GetClusterInfoRequest {}, timeout)
                .await;
            assert!(
                matches!(
                    result,
                    Err(RpcError::Timeout {
                        operation: RpcOperation::Call(Opcode::GetClusterInfo),
                        ..
                    })
                ),
                "{result:?}"
            );
            assert!(connection.is_broken());
            let again = connection
                .call::<_, GetClusterInfoResponse>(&GetClusterInfoRequest {}, timeout)
                .await;
            assert!(matches!(again, Err(RpcError::Closed)), "{again:?}");
        });
        drop(listener);
    }

    #[test]
    fn responses_to_other_requests_are_skipped() {
        let (address, peer) = scripted_peer(false, |request| {
            let encoder = FrameEncoder::new();
            let mut output = BytesMut::new();
            // A stale answer to an earlier request, a request of the peer's own, then the
            // answer.
            let stale = Envelope::request(Opcode::GetClusterInfo, RequestId(99));
            encoder
                .encode_error(&mut output, stale, ErrorCode::Internal, "stale")
                .unwrap();
            encoder
                .encode(
                    &mut output,
                    Envelope::request(Opcode::GetClusterInfo, RequestId(1)),
                    &GetClusterInfoRequest {},
                    &[],
                )
                .unwrap();
            let answer = GetClusterInfoResponse {
                clusters: vec![spillway_wire::message::ClusterInfo {
                    cluster: "main".into(),
                    broker_groups: vec![],
                }],
            };
            encoder
                .encode(&mut output, request.response(ErrorCode::Ok), &answer, &[])
                .unwrap();
            output
        });
        run(move || async move {
            let mut connection = RpcConnection::connect(&address, TIMEOUT)
                .await
                .expect("connect");
            let info: GetClusterInfoResponse = connection
                .call(&GetClusterInfoRequest {}, TIMEOUT)
                .await
                .expect("the answer after the skipped frames");
            assert_eq!(info.clusters[0].cluster, "main");
            assert!(!connection.is_broken());
        });
        peer.join().expect("peer thread");
    }

    #[test]
    fn a_connection_error_is_a_refusal_that_breaks_the_connection() {
        let (address, peer) = scripted_peer(false, |_| {
            let mut output = BytesMut::new();
            FrameEncoder::new()
                .encode_connection_error(
                    &mut output,
                    ErrorCode::ServiceUnavailable,
                    "too many connections",
                )
                .unwrap();
            output
        });
        run(move || async move {
            let mut connection = RpcConnection::connect(&address, TIMEOUT)
                .await
                .expect("connect");
            let result = connection
                .call::<_, GetClusterInfoResponse>(&GetClusterInfoRequest {}, TIMEOUT)
                .await;
            match result {
                Err(RpcError::Refused { code, message }) => {
                    assert_eq!(code, ErrorCode::ServiceUnavailable);
                    assert_eq!(message, "too many connections");
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
            assert!(connection.is_broken());
        });
        peer.join().expect("peer thread");
    }

    #[test]
    fn a_peer_closing_mid_call_is_closed() {
        let (address, peer) = scripted_peer(true, |_| BytesMut::new());
        run(move || async move {
            let mut connection = RpcConnection::connect(&address, TIMEOUT)
                .await
                .expect("connect");
            let result = connection
                .call::<_, GetClusterInfoResponse>(&GetClusterInfoRequest {}, TIMEOUT)
                .await;
            assert!(matches!(result, Err(RpcError::Closed)), "{result:?}");
        });
        peer.join().expect("peer thread");
    }

    #[test]
    fn garbage_from_the_peer_is_a_wire_error() {
        let (address, peer) = scripted_peer(false, |_| {
            BytesMut::from(&b"HTTP/1.1 400 Bad Request\r\n"[..])
        });
        run(move || async move {
            let mut connection = RpcConnection::connect(&address, TIMEOUT)
                .await
                .expect("connect");
            let result = connection
                .call::<_, GetClusterInfoResponse>(&GetClusterInfoRequest {}, TIMEOUT)
                .await;
            assert!(
                matches!(result, Err(RpcError::Wire(WireError::BadMagic { .. }))),
                "{result:?}"
            );
            assert!(connection.is_broken());
        });
        peer.join().expect("peer thread");
    }
}
