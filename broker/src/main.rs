//! `spillway-broker`: the thread-per-core broker process.
//!
//! Not built yet: it arrives with the cluster issue. Each shard will own a
//! `spillway_storage::ShardStore` inside its own glommio executor.

fn main() {
    eprintln!("spillway-broker is not built yet; see the cluster issue");
    std::process::exit(2);
}
