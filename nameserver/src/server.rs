//! The name server's network side: accept connections, read frames, answer each request
//! from the [`Registry`], and scan for silent brokers, all on one thread.
//!
//! # Why one glommio executor
//!
//! A name server holds a few thousand small entries and answers small requests; one core
//! is plenty, and one thread means the registry needs no lock: it lives in a `RefCell`
//! that is only borrowed between awaits, never across one. The runtime is a single glommio
//! `LocalExecutor` (io_uring, `glommio::net::TcpListener`) because the broker runs on
//! glommio too: one runtime, one set of idioms, and thousands of idle broker and client
//! connections cost a task each rather than a thread each (std threads with blocking
//! sockets would need a thread per connection, or a poll loop written by hand). It did not
//! fight us: the only thing glommio lacks is signal handling, so SIGTERM/SIGINT set a flag
//! (`signal-hook`) that a task polls every [`SHUTDOWN_POLL_MS`].
//!
//! # Protocol behaviour
//!
//! * Frames are read with [`FrameDecoder`] limited to `max_frame_bytes`. A framing error
//!   ([`WireError::closes_connection`]) is answered with a connection-error response
//!   (request id 0) and the connection is closed.
//! * Every request gets exactly one response with its request id and opcode: the
//!   operation's response header, or an error response with an [`ErrorCode`] and a message.
//!   One-way frames are handled and not answered; response frames are ignored.
//! * Opcodes the name server does not serve are answered [`ErrorCode::UnknownOpcode`];
//!   headers that do not validate [`ErrorCode::BadHeader`]; registry refusals carry their
//!   own code ([`crate::registry::RegistryError::error_code`]).
//! * A connection beyond `max_connections` gets a [`ErrorCode::ServiceUnavailable`]
//!   connection error and is closed at once.
//! * Requests on one connection are answered in order; the next read waits until the
//!   answers of the last one are written (and answers are written as soon as 64 KiB pile
//!   up), so a client that does not read its responses stalls only itself, with bounded
//!   buffers: one frame in, at most 64 KiB plus one answer out.
//!
//! This module never decides registry semantics; it only translates frames to
//! [`Registry`] calls and back, passing the clock in.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use spillway_wire::message::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, GetClusterInfoRequest, GetTopicRouteRequest,
    RegisterBrokerRequest, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use spillway_wire::{
    Envelope, ErrorCode, Frame, FrameDecoder, FrameEncoder, FrameKind, Opcode, WireError,
    WireHeader,
};

use crate::config::NameServerConfig;
use crate::registry::{Registered, Registry, Unregistered};

/// How often the shutdown flag is looked at.
pub const SHUTDOWN_POLL_MS: u64 = 50;
/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 16 << 10;
/// Answers buffered for a connection before they are written, even mid-read.
const OUTPUT_FLUSH_BYTES: usize = 64 << 10;
/// How long a refused connection's error response may take to write.
const REFUSAL_WRITE_MS: u64 = 100;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_MS: u64 = 100;

/// Everything the tasks share (on one thread).
struct State {
    config: NameServerConfig,
    registry: RefCell<Registry>,
    connections: Cell<usize>,
    encoder: FrameEncoder,
}

/// A refused request: the code and the message the client gets.
type Refusal = (ErrorCode, String);

/// Binds, prints `listening on ADDR` to stdout, and serves until `shutdown` is set.
/// Returns an error only if binding fails.
pub async fn serve(config: NameServerConfig, shutdown: Arc<AtomicBool>) -> io::Result<()> {
    let listener = TcpListener::bind(config.listen)?;
    let address = listener.local_addr()?;
    {
        use std::io::Write;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on {address}")?;
        stdout.flush()?;
    }
    tracing::info!(
        %address,
        broker_timeout_ms = config.broker_timeout_ms,
        scan_interval_ms = config.scan_interval_ms,
        max_connections = config.max_connections,
        max_frame_bytes = config.max_frame_bytes,
        max_brokers = config.max_brokers,
        "name server listening"
    );
    let state = Rc::new(State {
        registry: RefCell::new(Registry::new(config.max_brokers)),
        connections: Cell::new(0),
        encoder: FrameEncoder::with_max_frame_bytes(config.max_frame_bytes),
        config,
    });
    glommio::spawn_local(scan_for_silent_brokers(state.clone())).detach();
    futures_lite::future::or(accept_connections(listener, state), async {
        while !shutdown.load(Ordering::Relaxed) {
            glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
        }
        tracing::info!("shutdown signal received, stopping");
    })
    .await;
    Ok(())
}

/// Removes brokers silent for longer than the timeout, every `scan_interval_ms`.
async fn scan_for_silent_brokers(state: Rc<State>) {
    loop {
        glommio::timer::sleep(state.config.scan_interval()).await;
        let expired = state
            .registry
            .borrow_mut()
            .expire(Instant::now(), state.config.broker_timeout());
        for broker in expired {
            tracing::warn!(
                cluster = %broker.cluster,
                broker_name = %broker.broker_name,
                broker_id = broker.broker_id.0,
                address = %broker.address,
                silent_ms = broker.silent_for.as_millis() as u64,
                "broker silent for too long, removed"
            );
        }
    }
}

/// Accepts forever, one task per connection, refusing those over the limit.
async fn accept_connections(listener: TcpListener, state: Rc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        let peer = stream.peer_addr().ok();
        if state.connections.get() >= state.config.max_connections {
            tracing::warn!(
                ?peer,
                max_connections = state.config.max_connections,
                "connection refused: too many connections"
            );
            refuse_connection(stream, &state).await;
            continue;
        }
        state.connections.set(state.connections.get() + 1);
        tracing::debug!(?peer, "connection opened");
        glommio::spawn_local(serve_connection(stream, peer, state.clone())).detach();
    }
}

/// Best effort: a `ServiceUnavailable` connection error, then close.
async fn refuse_connection(mut stream: TcpStream, state: &State) {
    let mut output = BytesMut::new();
    let encoded = state.encoder.encode_connection_error(
        &mut output,
        ErrorCode::ServiceUnavailable,
        "too many connections",
    );
    if encoded.is_ok() {
        let write = async {
            let _ = stream.write_all(&output).await;
        };
        let give_up = glommio::timer::sleep(Duration::from_millis(REFUSAL_WRITE_MS));
        futures_lite::future::or(write, give_up).await;
    }
    let _ = stream.shutdown(Shutdown::Both).await;
}

/// Decrements the connection count however the connection task ends.
struct ConnectionSlot(Rc<State>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// Reads frames and answers them until the peer closes or the stream breaks.
async fn serve_connection(mut stream: TcpStream, peer: Option<SocketAddr>, state: Rc<State>) {
    let slot = ConnectionSlot(state);
    let state = &slot.0;
    let decoder = FrameDecoder::with_max_frame_bytes(state.config.max_frame_bytes);
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(0) => {
                tracing::debug!(?peer, "connection closed by peer");
                return;
            }
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(?peer, %error, "connection read failed");
                return;
            }
        };
        input.extend_from_slice(&chunk[..read]);
        let mut broken = false;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    handle_frame(&frame, state, &mut output);
                    // Many small requests in one read can ask for many large answers:
                    // write them out as they pile up rather than buffer them all.
                    if output.len() >= OUTPUT_FLUSH_BYTES {
                        if let Err(error) = stream.write_all(&output).await {
                            tracing::debug!(?peer, %error, "connection write failed");
                            return;
                        }
                        output.clear();
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(?peer, %error, "unreadable stream, closing the connection");
                    encode_refusal(
                        state,
                        &mut output,
                        Envelope::connection_error(error.error_code()),
                        (error.error_code(), error.to_string()),
                    );
                    broken = true;
                    break;
                }
            }
        }
        if !output.is_empty() {
            if let Err(error) = stream.write_all(&output).await {
                tracing::debug!(?peer, %error, "connection write failed");
                return;
            }
            output.clear();
        }
        if broken {
            let _ = stream.shutdown(Shutdown::Write).await;
            return;
        }
    }
}

/// Answers one frame into `output` (nothing for one-way and response frames).
fn handle_frame(frame: &Frame, state: &State, output: &mut BytesMut) {
    match frame.kind() {
        FrameKind::Response => {
            tracing::debug!(
                opcode = frame.envelope().opcode_number(),
                "ignoring a response frame sent to the name server"
            );
        }
        FrameKind::Request | FrameKind::OneWay => {
            let reply = Reply {
                state,
                frame,
                output,
            };
            dispatch(reply, Instant::now());
        }
    }
}

/// Where the answer to one request goes.
struct Reply<'a> {
    state: &'a State,
    frame: &'a Frame,
    output: &'a mut BytesMut,
}

impl Reply<'_> {
    /// Sends an error response.
    fn refuse(self, refusal: Refusal) {
        self.send::<UnregisterBrokerResponse>(Err(refusal));
    }

    /// Sends the response header, or the error response.
    fn send<H: WireHeader>(self, result: Result<H, Refusal>) {
        if self.frame.kind() == FrameKind::OneWay {
            if let Err((code, message)) = result {
                tracing::debug!(%code, %message, "one-way request refused");
            }
            return;
        }
        let envelope = *self.frame.envelope();
        match result {
            Ok(header) => {
                let encoded = self.state.encoder.encode(
                    self.output,
                    envelope.response(ErrorCode::Ok),
                    &header,
                    &[],
                );
                if let Err(error) = encoded {
                    tracing::error!(%error, "could not encode a response");
                    encode_refusal(
                        self.state,
                        self.output,
                        envelope,
                        (
                            ErrorCode::Internal,
                            format!("could not encode the response: {error}"),
                        ),
                    );
                }
            }
            Err(refusal) => encode_refusal(self.state, self.output, envelope, refusal),
        }
    }
}

/// Appends an error response to `request` (or a connection error).
fn encode_refusal(state: &State, output: &mut BytesMut, request: Envelope, refusal: Refusal) {
    let (code, message) = refusal;
    if let Err(error) = state.encoder.encode_error(output, request, code, &message) {
        // An error detail is cut to 1 KiB, far below the smallest frame limit.
        tracing::error!(%error, "could not encode an error response");
    }
}

fn bad_header(error: WireError) -> Refusal {
    (error.error_code(), error.to_string())
}

/// Runs the request against the registry and sends its answer.
fn dispatch(reply: Reply<'_>, now: Instant) {
    let state = reply.state;
    let frame = reply.frame;
    let opcode = match frame.opcode() {
        Ok(opcode) => opcode,
        Err(error) => return reply.refuse(bad_header(error)),
    };
    match opcode {
        Opcode::RegisterBroker => {
            let result = frame
                .deserialize_header::<RegisterBrokerRequest>()
                .map_err(bad_header)
                .and_then(|request| {
                    let summary = (
                        request.cluster.clone(),
                        request.broker_name.clone(),
                        request.broker_id.0,
                        request.address.clone(),
                        request.topics.len(),
                        request.topics_version,
                    );
                    let result = state.registry.borrow_mut().register(request, now);
                    let (cluster, broker_name, broker_id, address, topics, version) = summary;
                    match result {
                        Ok((registered, response)) => {
                            let what = match &registered {
                                Registered::New => "broker registered".to_owned(),
                                Registered::Updated => "broker re-registered".to_owned(),
                                Registered::Moved { previous_address } => {
                                    format!("broker re-registered, moved from {previous_address}")
                                }
                            };
                            tracing::info!(
                                %cluster, %broker_name, broker_id, %address, topics,
                                topics_version = version, "{what}"
                            );
                            Ok(response)
                        }
                        Err(error) => {
                            tracing::warn!(%error, "registration refused");
                            Err((error.error_code(), error.to_string()))
                        }
                    }
                });
            reply.send(result);
        }
        Opcode::BrokerHeartbeat => {
            let result = frame
                .deserialize_header::<BrokerHeartbeatRequest>()
                .map_err(bad_header)
                .map(|request| {
                    let registration_needed = state.registry.borrow_mut().heartbeat(&request, now);
                    tracing::debug!(
                        broker_name = %request.broker_name,
                        broker_id = request.broker_id.0,
                        registration_needed,
                        "heartbeat"
                    );
                    BrokerHeartbeatResponse {
                        registration_needed,
                    }
                });
            reply.send(result);
        }
        Opcode::UnregisterBroker => {
            let result = frame
                .deserialize_header::<UnregisterBrokerRequest>()
                .map_err(bad_header)
                .map(|request| {
                    let outcome = state.registry.borrow_mut().unregister(&request);
                    match outcome {
                        Unregistered::Removed => tracing::info!(
                            cluster = %request.cluster,
                            broker_name = %request.broker_name,
                            broker_id = request.broker_id.0,
                            address = %request.address,
                            "broker unregistered"
                        ),
                        Unregistered::Unknown => tracing::debug!(
                            broker_name = %request.broker_name,
                            broker_id = request.broker_id.0,
                            "unregister of an unknown broker"
                        ),
                        Unregistered::AddressMismatch { registered_address } => tracing::warn!(
                            broker_name = %request.broker_name,
                            broker_id = request.broker_id.0,
                            address = %request.address,
                            %registered_address,
                            "stale unregister ignored: the broker is registered elsewhere"
                        ),
                    }
                    UnregisterBrokerResponse {}
                });
            reply.send(result);
        }
        Opcode::GetTopicRoute => {
            let result = frame
                .header::<GetTopicRouteRequest>()
                .map_err(bad_header)
                .and_then(|request| {
                    state
                        .registry
                        .borrow()
                        .topic_route(request.topic.as_str())
                        .map_err(|error| (error.error_code(), error.to_string()))
                });
            reply.send(result);
        }
        Opcode::GetClusterInfo => {
            let result = frame
                .header::<GetClusterInfoRequest>()
                .map_err(bad_header)
                .map(|_| state.registry.borrow().cluster_info());
            reply.send(result);
        }
        other => reply.refuse((
            ErrorCode::UnknownOpcode,
            format!("opcode {other} is not served by a name server"),
        )),
    }
}
