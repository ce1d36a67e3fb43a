//! A small synchronous, read-only NBD client that is a [`BlockSource`](guestkit_block::BlockSource).
//!
//! Hand-written rather than taken from crates.io: the protocol subset a read-only client needs
//! (fixed newstyle handshake, `NBD_OPT_GO` / `NBD_OPT_EXPORT_NAME`, `NBD_CMD_READ` with simple
//! replies, `NBD_CMD_DISC`) is a few hundred lines. The `nbd` crate is synchronous but describes
//! itself as an early version and exposes a stateful `Read + Seek` cursor over a borrowed stream
//! rather than positioned reads on a shareable handle; the libnbd bindings are LGPL C behind FFI.
//!
//! ```no_run
//! use guestkit_block::BlockSource;
//! use guestkit_nbd::{NbdClient, NbdUri, Options};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let uri = NbdUri::parse("nbd+unix:///disk?socket=/run/nbd.sock")?;
//! let disk = NbdClient::connect(&uri, &Options::default())?;
//! let mut sector = [0u8; 512];
//! disk.read_at(0, &mut sector)?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod client;
mod uri;

pub use client::{NbdClient, Options};
pub use uri::{Address, DEFAULT_PORT, NbdUri, UriError};
