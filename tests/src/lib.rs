//! Cross-process integration tests (real name servers and brokers on loopback) live here
//! once the cluster exists. Storage's own crash and corruption tests sit in `storage/tests/`,
//! beside the engine they test.
