//! A read-only, bounded parser for Windows registry hives, and the Windows facts that guest
//! inspection reads from the SOFTWARE and SYSTEM hives.
//!
//! ```no_run
//! # let (software, system) = (Vec::new(), Vec::new());
//! let facts = winreg::inspect_windows(&software, &system);
//! println!("{:?} {:?}", facts.product_name, facts.hostname);
//!
//! let hive = winreg::Hive::new(&software)?;
//! let root = hive.root()?;
//! if let Some(cv) = hive.open(&root, r"Microsoft\Windows NT\CurrentVersion")? {
//!     if let Some(v) = hive.value(&cv, "ProductName")? {
//!         println!("{}", hive.value_string(&v)?);
//!     }
//! }
//! # Ok::<(), winreg::Error>(())
//! ```
//!
//! The input is untrusted: offsets are bounds-checked, lists and value data are capped
//! ([`MAX_SUBKEYS`], [`MAX_VALUES`], [`MAX_VALUE_DATA`]), [`Hive::walk`] is depth- and
//! count-limited and visits each key once, and every failure is an [`Error`] value.

#![forbid(unsafe_code)]

mod hive;
mod pe;
mod windows;

pub use hive::{
    BASE_BLOCK_SIZE, Error, Hive, Key, MAX_NAME_BYTES_PER_KEY, MAX_SUBKEYS, MAX_VALUE_DATA,
    MAX_VALUES, Value, ValueData, ValueType, WalkLimits, WalkSummary,
};
pub use pe::pe_arch;
pub use windows::{
    Application, DriveMapping, MAX_APPLICATIONS, MAX_WARNINGS, WindowsFacts, inspect_windows,
    parse_mounted_device,
};

#[cfg(test)]
mod testhive;
#[cfg(test)]
mod tests;
