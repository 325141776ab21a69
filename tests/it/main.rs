//! Every black-box integration test of the daemon, in one test binary: `tests/common` is compiled
//! and linked once instead of once per file (33 links of a large binary on a 2-core CI box).
//! Each former `tests/<name>.rs` is a module here; `cargo test --test it <name>::` runs one of
//! them, `cargo test --test it` all of them. Tests that talk to the swarm hold
//! [`common::serial`], so they still run one at a time; the others run beside them.
//!
//! The chaos soak (`soak`) is `#[ignore]`d: `cargo test --test it soak:: -- --ignored`.

mod common;

mod abort;
mod bad_input;
mod bad_input_table;
mod cache;
mod cluster;
mod data;
mod dlna;
mod examples;
mod faults;
mod flag_effects;
mod flags;
mod full_disk_add;
mod fuse;
mod holes;
mod identity;
mod incoming;
mod links;
mod meta;
mod ops_files;
mod pads;
mod page;
mod range;
mod secrets_logs;
mod soak;
mod surface;
mod webdav;
