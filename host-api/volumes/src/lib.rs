//! Volumes of a disk: partition tables (MBR with extended/logical partitions, GPT) and LVM2
//! volume groups, read in userspace over any [`BlockSource`].
//!
//! ```no_run
//! use guestkit_block::{BlockSource, FileSource};
//! use guestkit_volumes::{partition, lvm};
//! use std::sync::Arc;
//!
//! # fn main() -> guestkit_block::Result<()> {
//! let disk: Arc<dyn BlockSource> = Arc::new(FileSource::open("disk.raw".as_ref())?);
//! if let Some(table) = partition::read_partition_table(&disk)? {
//!     for p in &table.partitions {
//!         let part: Arc<dyn BlockSource> = Arc::new(p.open(disk.clone())?);
//!         if let Some(pv) = lvm::PhysicalVolume::probe(part)? {
//!             let vg = lvm::VolumeGroup::assemble(vec![pv])?;
//!             for lv in vg.logical_volumes() {
//!                 let _reader = vg.open_lv(&lv.name)?;
//!             }
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod guid;
pub mod lvm;
mod lvm_text;
pub mod partition;

pub use guestkit_block::{BlockSource, Error, Result};
pub use guid::Guid;
pub use partition::{Partition, PartitionTable, PartitionType, TableKind, read_partition_table};
