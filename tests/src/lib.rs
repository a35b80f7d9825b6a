//! Cross-process integration tests of the Spillway cluster: real `spillway-nameserver` and
//! `spillway-broker` processes on loopback, ephemeral ports and temporary directories,
//! driven over the wire protocol by a blocking test client. The tests are in `tests/`, one
//! file per subject; this library is their harness. Storage's own crash and corruption
//! tests sit in `storage/tests/`, beside the engine they test.
//!
//! Why real processes: what these tests check (shards sharing a port, long polls across
//! shards, registration with name servers, exit status on SIGTERM, what survives SIGKILL)
//! only exists between processes. Each test starts its own servers, so tests run in
//! parallel and never share state.
//!
//! The harness never sleeps to let something happen: it blocks on the event it waits for
//! (a line on a pipe, a response on a socket) with a timeout, or, when the only way to learn
//! of a change is to ask again, polls against a deadline ([`wait`]).
//!
//! # Map
//!
//! * [`artifacts`] finds (and builds) the server binaries; the scratch directory.
//! * [`server_process`] runs a server as a child process: `listening on ADDR`, signals, log.
//! * [`name_server`] has [`NameServer`].
//! * [`broker`] has [`BrokerConfigBuilder`] and [`Broker`].
//! * [`wire_client`] has [`WireClient`], the blocking client, with a helper per operation.
//! * [`records`] encodes producer batches and parses pulled records.
//! * [`crafted`] makes bytes no correct client sends, for the bad-input tests.
//! * [`wait`] has the deadlines and polling.
//!
//! # Example
//!
//! ```no_run
//! use spillway_tests::{BrokerConfigBuilder, NameServer};
//!
//! let name_server = NameServer::start(&[]);
//! let broker = BrokerConfigBuilder::new(&[name_server.address()])
//!     .topic("orders", 4)
//!     .start();
//! let mut client = broker.connect();
//! let offset = client.produce("orders", 1, &[("paid", b"order 1")]).unwrap();
//! let (_, messages) = client.pull("orders", 1, offset, 32, 0, "*").unwrap();
//! assert_eq!(messages[0].body, b"order 1");
//! ```

pub mod artifacts;
pub mod broker;
pub mod crafted;
pub mod name_server;
pub mod records;
pub mod server_process;
pub mod wait;
pub mod wire_client;

pub use broker::{Broker, BrokerConfigBuilder, Flush};
pub use name_server::{route_is_gone, NameServer};
pub use records::{encode_batch, parse_records, OutgoingMessage, ParsedMessage};
pub use wait::{poll_until, DEADLINE};
pub use wire_client::{Received, Refused, WireClient};
