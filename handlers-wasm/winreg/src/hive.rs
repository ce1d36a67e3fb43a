//! The regf reader: base block, cells, keys (`nk`), subkey lists (`lf`/`lh`/`li`/`ri`), values
//! (`vk`) and their data (inline, one cell, or `db` big-data segments).
//!
//! Written by hand rather than taken from a crate: nt-hive is GPL-2.0, and notatin (Apache-2.0) is
//! a forensic toolkit (deleted-cell recovery, transaction logs, file-based I/O and a large
//! dependency tree) that is not built for wasm32-wasip2. What inspection needs is a few hundred
//! lines of read-only lookups over a byte slice with explicit caps, which is what this is.
//!
//! Layout reference: the regf format as documented by libyal's "Windows NT Registry File (REGF)
//! format specification" and hivex's `hivex-internal.h`; offsets of cells are relative to the
//! first hive bin, 4096 bytes into the file.

use std::collections::HashSet;
use std::fmt;
use std::ops::ControlFlow;

/// Size of the base block ("regf" header) that precedes the hive bins.
pub const BASE_BLOCK_SIZE: usize = 4096;
/// Most subkeys read from one key.
pub const MAX_SUBKEYS: usize = 65_536;
/// Most values read from one key.
pub const MAX_VALUES: usize = 65_536;
/// Largest value data returned, in bytes.
pub const MAX_VALUE_DATA: usize = 1 << 20;
/// Most bytes of names decoded while listing or searching one key's subkeys or values.
pub const MAX_NAME_BYTES_PER_KEY: usize = 4 << 20;
/// Longest key name accepted, in stored bytes (Windows allows 255 characters).
const MAX_KEY_NAME: usize = 1024;
/// Offset meaning "no cell".
const NO_CELL: u32 = 0xFFFF_FFFF;
/// Payload of one big-data segment.
const BIG_DATA_SEGMENT: usize = 16_344;
/// nk flag: the key name is stored as 8-bit (Latin-1) characters.
const KEY_COMP_NAME: u16 = 0x0020;
/// vk flag: the value name is stored as 8-bit (Latin-1) characters.
const VALUE_COMP_NAME: u16 = 0x0001;

/// Everything that can go wrong reading a hive. Offsets are cell offsets (relative to the first
/// hive bin) unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The file is shorter than a base block.
    TooShort { len: usize },
    /// A signature ("regf", "hbin", "nk", "vk", "lh", ...) is not what the structure needs.
    BadSignature { what: &'static str, offset: u32 },
    /// A hive format version this reader does not know.
    UnsupportedVersion { major: u32, minor: u32 },
    /// An offset or length points outside the hive bins.
    OutOfBounds { what: &'static str, offset: u32 },
    /// A referenced cell is marked free.
    UnallocatedCell { what: &'static str, offset: u32 },
    /// A cell whose contents do not fit its own size or structure.
    BadCell { what: &'static str, offset: u32 },
    /// More list entries than this reader accepts.
    TooMany { what: &'static str, limit: usize },
    /// Value data larger than [`MAX_VALUE_DATA`].
    TooLarge { size: usize, limit: usize },
    /// A value has a type other than the one asked for.
    WrongType {
        value: String,
        expected: &'static str,
        found: u32,
    },
    /// A value's data does not fit its type (e.g. a DWORD that is not 4 bytes).
    BadData { value: String, reason: &'static str },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooShort { len } => write!(f, "file of {len} bytes is too short for a hive"),
            Error::BadSignature { what, offset } => {
                write!(f, "bad {what} signature at offset {offset:#x}")
            }
            Error::UnsupportedVersion { major, minor } => {
                write!(f, "unsupported hive format version {major}.{minor}")
            }
            Error::OutOfBounds { what, offset } => {
                write!(f, "{what} at offset {offset:#x} lies outside the hive")
            }
            Error::UnallocatedCell { what, offset } => {
                write!(f, "{what} at offset {offset:#x} is a free cell")
            }
            Error::BadCell { what, offset } => write!(f, "malformed {what} at offset {offset:#x}"),
            Error::TooMany { what, limit } => write!(f, "more than {limit} {what}"),
            Error::TooLarge { size, limit } => {
                write!(
                    f,
                    "value data of {size} bytes exceeds the {limit}-byte limit"
                )
            }
            Error::WrongType {
                value,
                expected,
                found,
            } => write!(f, "value {value:?} is of type {found}, not {expected}"),
            Error::BadData { value, reason } => write!(f, "value {value:?}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Registry value types (`REG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    None,
    Sz,
    ExpandSz,
    Binary,
    Dword,
    DwordBigEndian,
    Link,
    MultiSz,
    ResourceList,
    FullResourceDescriptor,
    ResourceRequirementsList,
    Qword,
    /// A type number outside the documented ones.
    Other(u32),
}

impl ValueType {
    /// The type for a `REG_*` number.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            0 => ValueType::None,
            1 => ValueType::Sz,
            2 => ValueType::ExpandSz,
            3 => ValueType::Binary,
            4 => ValueType::Dword,
            5 => ValueType::DwordBigEndian,
            6 => ValueType::Link,
            7 => ValueType::MultiSz,
            8 => ValueType::ResourceList,
            9 => ValueType::FullResourceDescriptor,
            10 => ValueType::ResourceRequirementsList,
            11 => ValueType::Qword,
            other => ValueType::Other(other),
        }
    }
}

/// A value's data decoded according to its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueData {
    None(Vec<u8>),
    String(String),
    ExpandString(String),
    Link(String),
    Binary(Vec<u8>),
    Dword(u32),
    Qword(u64),
    MultiString(Vec<String>),
    /// Resource lists and unknown types: the raw bytes.
    Other {
        kind: u32,
        data: Vec<u8>,
    },
}

/// A key (`nk` cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    offset: u32,
    name: String,
    flags: u16,
    subkey_count: u32,
    subkey_list: u32,
    value_count: u32,
    value_list: u32,
    security: u32,
}

impl Key {
    /// The key's name (not its path).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The cell offset of its `nk` record: a stable identity within one hive.
    pub fn offset(&self) -> u32 {
        self.offset
    }
    /// Number of (stable) subkeys the key claims to have.
    pub fn subkey_count(&self) -> u32 {
        self.subkey_count
    }
    /// Number of values the key claims to have.
    pub fn value_count(&self) -> u32 {
        self.value_count
    }
    /// The raw `nk` flags.
    pub fn flags(&self) -> u16 {
        self.flags
    }
}

/// A value (`vk` cell); its data is read on demand with [`Hive::value_data`] and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    offset: u32,
    name: String,
    kind: u32,
    data_size: u32,
    data_offset: u32,
}

impl Value {
    /// The value's name; empty for a key's default value.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The raw `REG_*` type number.
    pub fn raw_type(&self) -> u32 {
        self.kind
    }
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        ValueType::from_raw(self.kind)
    }
    /// Length of the data in bytes, as the value records it.
    pub fn data_len(&self) -> usize {
        (self.data_size & 0x7FFF_FFFF) as usize
    }
    /// The cell offset of its `vk` record.
    pub fn offset(&self) -> u32 {
        self.offset
    }
}

/// Limits for [`Hive::walk`].
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Deepest level descended into (the start key is depth 0).
    pub max_depth: usize,
    /// Most keys visited in total.
    pub max_keys: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_depth: 512,
            max_keys: 1_000_000,
        }
    }
}

/// What a [`Hive::walk`] saw besides the keys it visited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkSummary {
    /// Keys passed to the visitor.
    pub keys: usize,
    /// Subkey references to keys already visited (cycles or shared cells), not followed.
    pub revisits: usize,
    /// The depth or key limit stopped the walk somewhere.
    pub truncated: bool,
    /// Errors met reading subkeys (the first 64).
    pub errors: Vec<Error>,
}

/// An opened hive: a validated base block over the caller's bytes.
#[derive(Debug, Clone)]
pub struct Hive<'a> {
    bins: &'a [u8],
    root: u32,
    minor_version: u32,
    notes: Vec<String>,
}

impl<'a> Hive<'a> {
    /// Opens a hive held in memory. Fails only if the base block is unusable; problems that still
    /// allow reading (bad checksum, dirty or truncated hive) are kept as [`Hive::notes`].
    pub fn new(data: &'a [u8]) -> Result<Self, Error> {
        if data.len() < BASE_BLOCK_SIZE {
            return Err(Error::TooShort { len: data.len() });
        }
        if &data[..4] != b"regf" {
            return Err(Error::BadSignature {
                what: "regf base block",
                offset: 0,
            });
        }
        let (major, minor) = (le32(data, 20), le32(data, 24));
        if major != 1 || !(2..=6).contains(&minor) {
            return Err(Error::UnsupportedVersion { major, minor });
        }
        let mut notes = Vec::new();
        if le32(data, 4) != le32(data, 8) {
            notes.push(
                "sequence numbers differ: the hive was not cleanly written and its transaction \
                 log is not applied, so recent changes may be missing"
                    .to_string(),
            );
        }
        if le32(data, 508) != header_checksum(data) {
            notes.push("base block checksum mismatch".to_string());
        }
        let bins_size = le32(data, 40) as usize;
        let available = data.len() - BASE_BLOCK_SIZE;
        let bins_len = if bins_size > available {
            notes.push(format!(
                "hive is truncated: the header announces {bins_size} bytes of hive bins, the \
                 file holds {available}"
            ));
            available
        } else if bins_size == 0 {
            notes.push("header announces no hive bins; reading the whole file".to_string());
            available
        } else {
            bins_size
        };
        let bins = &data[BASE_BLOCK_SIZE..BASE_BLOCK_SIZE + bins_len];
        if bins.get(..4) != Some(b"hbin".as_slice()) {
            return Err(Error::BadSignature {
                what: "first hbin",
                offset: 0,
            });
        }
        Ok(Hive {
            bins,
            root: le32(data, 36),
            minor_version: minor,
            notes,
        })
    }

    /// Problems found in the base block that did not stop the hive from opening.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The root key.
    pub fn root(&self) -> Result<Key, Error> {
        self.key_at(self.root)
    }

    /// The key whose `nk` cell is at `offset`.
    pub fn key_at(&self, offset: u32) -> Result<Key, Error> {
        let what = "key (nk)";
        let c = self.cell(offset, what)?;
        if c.len() < 76 {
            return Err(Error::BadCell { what, offset });
        }
        if &c[..2] != b"nk" {
            return Err(Error::BadSignature { what, offset });
        }
        let flags = le16(c, 2);
        let name_len = le16(c, 72) as usize;
        if name_len > MAX_KEY_NAME {
            return Err(Error::BadCell { what, offset });
        }
        let raw_name = c
            .get(76..76 + name_len)
            .ok_or(Error::BadCell { what, offset })?;
        Ok(Key {
            offset,
            name: decode_name(raw_name, flags & KEY_COMP_NAME != 0),
            flags,
            subkey_count: le32(c, 20),
            subkey_list: le32(c, 28),
            value_count: le32(c, 36),
            value_list: le32(c, 40),
            security: le32(c, 44),
        })
    }

    /// The subkeys of `key`, in the order of its subkey list. Fails on the first bad subkey; see
    /// [`Hive::subkeys_partial`] to keep the readable ones.
    pub fn subkeys(&self, key: &Key) -> Result<Vec<Key>, Error> {
        let mut keys = Vec::new();
        let mut failed = None;
        self.each_subkey(key, |k| match k {
            Ok(k) => {
                keys.push(k);
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })?;
        failed.map_or(Ok(keys), Err)
    }

    /// The readable subkeys of `key`, plus an error for each one that could not be read. Fails
    /// only if the subkey list itself is unreadable or over the limits.
    pub fn subkeys_partial(&self, key: &Key) -> Result<(Vec<Key>, Vec<Error>), Error> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        self.each_subkey(key, |k| {
            match k {
                Ok(k) => keys.push(k),
                Err(e) => errors.push(e),
            }
            ControlFlow::Continue(())
        })?;
        Ok((keys, errors))
    }

    /// The subkey of `key` called `name` (case-insensitive, as Windows compares key names).
    /// Unreadable siblings are skipped; their error is returned only if no subkey matches.
    pub fn subkey(&self, key: &Key, name: &str) -> Result<Option<Key>, Error> {
        let mut found = None;
        let mut first_error = None;
        self.each_subkey(key, |k| match k {
            Ok(k) if names_equal(&k.name, name) => {
                found = Some(k);
                ControlFlow::Break(())
            }
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                first_error.get_or_insert(e);
                ControlFlow::Continue(())
            }
        })?;
        match (found, first_error) {
            (Some(k), _) => Ok(Some(k)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// The key at `path` below `from`, components separated by backslashes (empty components are
    /// ignored, so a leading backslash is fine). `Ok(None)` if some component does not exist.
    pub fn open(&self, from: &Key, path: &str) -> Result<Option<Key>, Error> {
        let mut key = from.clone();
        for part in path.split('\\').filter(|p| !p.is_empty()) {
            match self.subkey(&key, part)? {
                Some(k) => key = k,
                None => return Ok(None),
            }
        }
        Ok(Some(key))
    }

    /// The values of `key`, in the order of its value list.
    pub fn values(&self, key: &Key) -> Result<Vec<Value>, Error> {
        let mut values = Vec::new();
        let mut failed = None;
        self.each_value(key, |v| match v {
            Ok(v) => {
                values.push(v);
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        })?;
        failed.map_or(Ok(values), Err)
    }

    /// The value of `key` called `name` (case-insensitive; "" is the default value).
    /// Unreadable siblings are skipped; their error is returned only if no value matches.
    pub fn value(&self, key: &Key, name: &str) -> Result<Option<Value>, Error> {
        let mut found = None;
        let mut first_error = None;
        self.each_value(key, |v| match v {
            Ok(v) if names_equal(&v.name, name) => {
                found = Some(v);
                ControlFlow::Break(())
            }
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                first_error.get_or_insert(e);
                ControlFlow::Continue(())
            }
        })?;
        match (found, first_error) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(None),
        }
    }

    /// Reads `key`'s subkeys one by one. A list may name the same (long-named) cell thousands of
    /// times, so the names decoded in one pass are capped at [`MAX_NAME_BYTES_PER_KEY`] in
    /// total: that bounds both the memory of a listing and the work of a lookup.
    fn each_subkey(
        &self,
        key: &Key,
        mut f: impl FnMut(Result<Key, Error>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut budget = MAX_NAME_BYTES_PER_KEY;
        for o in self.subkey_offsets(key)? {
            let k = self.key_at(o);
            if let Ok(k) = &k {
                budget = charge(budget, k.name.len())?;
            }
            if f(k).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Reads `key`'s values one by one, with the same name budget as [`Hive::each_subkey`].
    fn each_value(
        &self,
        key: &Key,
        mut f: impl FnMut(Result<Value, Error>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut budget = MAX_NAME_BYTES_PER_KEY;
        for o in self.value_offsets(key)? {
            let v = self.value_at(o);
            if let Ok(v) = &v {
                budget = charge(budget, v.name.len())?;
            }
            if f(v).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The self-relative security descriptor of `key`'s `sk` cell, as stored (not interpreted).
    pub fn security_descriptor(&self, key: &Key) -> Result<Vec<u8>, Error> {
        let what = "security (sk)";
        let offset = key.security;
        let c = self.cell(offset, what)?;
        if c.len() < 20 {
            return Err(Error::BadCell { what, offset });
        }
        if &c[..2] != b"sk" {
            return Err(Error::BadSignature { what, offset });
        }
        let len = le32(c, 16) as usize;
        c.get(20..20usize.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or(Error::BadCell { what, offset })
    }

    /// The raw bytes of a value's data, at most [`MAX_VALUE_DATA`].
    pub fn value_bytes(&self, value: &Value) -> Result<Vec<u8>, Error> {
        let size = value.data_len();
        let offset = value.data_offset;
        if value.data_size & 0x8000_0000 != 0 {
            // Up to 4 bytes stored in the offset field itself.
            let inline = offset.to_le_bytes();
            return match inline.get(..size) {
                Some(bytes) => Ok(bytes.to_vec()),
                None => Err(Error::BadCell {
                    what: "inline value data",
                    offset: value.offset,
                }),
            };
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        if size > MAX_VALUE_DATA {
            return Err(Error::TooLarge {
                size,
                limit: MAX_VALUE_DATA,
            });
        }
        let what = "value data";
        let c = self.cell(offset, what)?;
        if let Some(bytes) = c.get(..size) {
            return Ok(bytes.to_vec());
        }
        if size > BIG_DATA_SEGMENT && self.minor_version >= 4 && c.starts_with(b"db") {
            return self.big_data(offset, c, size);
        }
        Err(Error::BadCell { what, offset })
    }

    /// A value's data decoded according to its type.
    pub fn value_data(&self, value: &Value) -> Result<ValueData, Error> {
        let bytes = self.value_bytes(value)?;
        Ok(match value.value_type() {
            ValueType::None => ValueData::None(bytes),
            ValueType::Sz => ValueData::String(utf16_string(&bytes)),
            ValueType::ExpandSz => ValueData::ExpandString(utf16_string(&bytes)),
            ValueType::Link => ValueData::Link(utf16_string(&bytes)),
            ValueType::Binary => ValueData::Binary(bytes),
            ValueType::Dword | ValueType::DwordBigEndian => {
                ValueData::Dword(self.dword_of(value, &bytes)?)
            }
            ValueType::Qword => ValueData::Qword(qword_of(value, &bytes)?),
            ValueType::MultiSz => ValueData::MultiString(utf16_strings(&bytes)),
            _ => ValueData::Other {
                kind: value.kind,
                data: bytes,
            },
        })
    }

    /// A string value (`REG_SZ`, `REG_EXPAND_SZ` or `REG_LINK`), up to its first NUL. Expand
    /// strings are returned as stored (`%SystemRoot%` is not expanded).
    pub fn value_string(&self, value: &Value) -> Result<String, Error> {
        match value.value_type() {
            ValueType::Sz | ValueType::ExpandSz | ValueType::Link => {
                Ok(utf16_string(&self.value_bytes(value)?))
            }
            _ => Err(Error::WrongType {
                value: value.name.clone(),
                expected: "a string",
                found: value.kind,
            }),
        }
    }

    /// A `REG_MULTI_SZ` value's strings.
    pub fn value_multi_string(&self, value: &Value) -> Result<Vec<String>, Error> {
        match value.value_type() {
            ValueType::MultiSz => Ok(utf16_strings(&self.value_bytes(value)?)),
            _ => Err(Error::WrongType {
                value: value.name.clone(),
                expected: "REG_MULTI_SZ",
                found: value.kind,
            }),
        }
    }

    /// A `REG_DWORD` (little-endian) or `REG_DWORD_BIG_ENDIAN` value.
    pub fn value_dword(&self, value: &Value) -> Result<u32, Error> {
        match value.value_type() {
            ValueType::Dword | ValueType::DwordBigEndian => {
                self.dword_of(value, &self.value_bytes(value)?)
            }
            _ => Err(Error::WrongType {
                value: value.name.clone(),
                expected: "REG_DWORD",
                found: value.kind,
            }),
        }
    }

    /// A `REG_QWORD` value.
    pub fn value_qword(&self, value: &Value) -> Result<u64, Error> {
        match value.value_type() {
            ValueType::Qword => qword_of(value, &self.value_bytes(value)?),
            _ => Err(Error::WrongType {
                value: value.name.clone(),
                expected: "REG_QWORD",
                found: value.kind,
            }),
        }
    }

    /// Visits `start` and every key below it, depth first, parents before children. `visit` gets
    /// the depth and the key and returns whether to descend into it. Each key is visited once
    /// even if several lists reference it (so a cycle ends), within `limits`.
    pub fn walk(
        &self,
        start: &Key,
        limits: WalkLimits,
        mut visit: impl FnMut(usize, &Key) -> bool,
    ) -> WalkSummary {
        let mut summary = WalkSummary::default();
        let mut seen = HashSet::new();
        let mut stack = vec![(0usize, start.clone())];
        seen.insert(start.offset);
        while let Some((depth, key)) = stack.pop() {
            if summary.keys >= limits.max_keys {
                summary.truncated = true;
                break;
            }
            summary.keys += 1;
            if !visit(depth, &key) {
                continue;
            }
            if depth >= limits.max_depth {
                summary.truncated |= key.subkey_count > 0;
                continue;
            }
            let (children, errors) = match self.subkeys_partial(&key) {
                Ok(found) => found,
                Err(e) => (Vec::new(), vec![e]),
            };
            for e in errors {
                if summary.errors.len() < 64 {
                    summary.errors.push(e);
                }
            }
            // Reversed so that the first child is visited first.
            for child in children.into_iter().rev() {
                if seen.insert(child.offset) {
                    stack.push((depth + 1, child));
                } else {
                    summary.revisits += 1;
                }
            }
        }
        summary
    }

    /// The allocated cell at `offset`, without its size field.
    fn cell(&self, offset: u32, what: &'static str) -> Result<&'a [u8], Error> {
        let start = offset as usize;
        let bins = self.bins;
        let header = start
            .checked_add(4)
            .and_then(|end| bins.get(start..end))
            .ok_or(Error::OutOfBounds { what, offset })?;
        let size = i32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if size >= 0 {
            return Err(Error::UnallocatedCell { what, offset });
        }
        let len = size.unsigned_abs() as usize;
        if len < 8 {
            return Err(Error::BadCell { what, offset });
        }
        start
            .checked_add(len)
            .and_then(|end| bins.get(start + 4..end))
            .ok_or(Error::OutOfBounds { what, offset })
    }

    /// The `nk` offsets of `key`'s subkeys, through one level of `ri` indirection.
    fn subkey_offsets(&self, key: &Key) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        if key.subkey_count == 0 || key.subkey_list == NO_CELL {
            return Ok(out);
        }
        self.list_offsets(key.subkey_list, false, &mut out)?;
        Ok(out)
    }

    fn list_offsets(&self, offset: u32, in_index: bool, out: &mut Vec<u32>) -> Result<(), Error> {
        let what = "subkey list";
        let c = self.cell(offset, what)?;
        if c.len() < 4 {
            return Err(Error::BadCell { what, offset });
        }
        let count = le16(c, 2) as usize;
        let (stride, is_index) = match &c[..2] {
            b"lf" | b"lh" => (8, false),
            b"li" => (4, false),
            b"ri" if !in_index => (4, true),
            // An index root inside an index root is not a thing Windows writes; refusing it
            // also keeps the recursion one level deep.
            _ => return Err(Error::BadSignature { what, offset }),
        };
        let entries = c
            .get(4..4 + count * stride)
            .ok_or(Error::BadCell { what, offset })?;
        for entry in entries.chunks_exact(stride) {
            let target = le32(entry, 0);
            if is_index {
                self.list_offsets(target, true, out)?;
            } else {
                if out.len() >= MAX_SUBKEYS {
                    return Err(Error::TooMany {
                        what: "subkeys in one key",
                        limit: MAX_SUBKEYS,
                    });
                }
                out.push(target);
            }
        }
        Ok(())
    }

    fn value_offsets(&self, key: &Key) -> Result<Vec<u32>, Error> {
        let count = key.value_count as usize;
        if count == 0 || key.value_list == NO_CELL {
            return Ok(Vec::new());
        }
        if count > MAX_VALUES {
            return Err(Error::TooMany {
                what: "values in one key",
                limit: MAX_VALUES,
            });
        }
        let what = "value list";
        let offset = key.value_list;
        let c = self.cell(offset, what)?;
        let entries = c.get(..count * 4).ok_or(Error::BadCell { what, offset })?;
        Ok(entries.chunks_exact(4).map(|e| le32(e, 0)).collect())
    }

    fn value_at(&self, offset: u32) -> Result<Value, Error> {
        let what = "value (vk)";
        let c = self.cell(offset, what)?;
        if c.len() < 20 {
            return Err(Error::BadCell { what, offset });
        }
        if &c[..2] != b"vk" {
            return Err(Error::BadSignature { what, offset });
        }
        let name_len = le16(c, 2) as usize;
        let flags = le16(c, 16);
        let raw_name = c
            .get(20..20 + name_len)
            .ok_or(Error::BadCell { what, offset })?;
        Ok(Value {
            offset,
            name: decode_name(raw_name, flags & VALUE_COMP_NAME != 0),
            data_size: le32(c, 4),
            data_offset: le32(c, 8),
            kind: le32(c, 12),
        })
    }

    /// Data of more than one segment: a `db` cell pointing to a list of segment cells.
    fn big_data(&self, offset: u32, db: &[u8], size: usize) -> Result<Vec<u8>, Error> {
        let what = "big data (db)";
        if db.len() < 8 {
            return Err(Error::BadCell { what, offset });
        }
        let segments = le16(db, 2) as usize;
        let list_offset = le32(db, 4);
        let list = self.cell(list_offset, "big data segment list")?;
        let entries = list.get(..segments * 4).ok_or(Error::BadCell {
            what: "big data segment list",
            offset: list_offset,
        })?;
        let mut data = Vec::with_capacity(size);
        for entry in entries.chunks_exact(4) {
            if data.len() == size {
                break;
            }
            let seg = self.cell(le32(entry, 0), "big data segment")?;
            let take = (size - data.len()).min(BIG_DATA_SEGMENT).min(seg.len());
            data.extend_from_slice(&seg[..take]);
        }
        if data.len() != size {
            return Err(Error::BadCell { what, offset });
        }
        Ok(data)
    }

    fn dword_of(&self, value: &Value, bytes: &[u8]) -> Result<u32, Error> {
        let b: [u8; 4] = bytes.try_into().map_err(|_| Error::BadData {
            value: value.name.clone(),
            reason: "a DWORD that is not 4 bytes long",
        })?;
        Ok(match value.value_type() {
            ValueType::DwordBigEndian => u32::from_be_bytes(b),
            _ => u32::from_le_bytes(b),
        })
    }
}

fn charge(budget: usize, bytes: usize) -> Result<usize, Error> {
    budget.checked_sub(bytes).ok_or(Error::TooMany {
        what: "bytes of names in one key",
        limit: MAX_NAME_BYTES_PER_KEY,
    })
}

fn qword_of(value: &Value, bytes: &[u8]) -> Result<u64, Error> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| Error::BadData {
        value: value.name.clone(),
        reason: "a QWORD that is not 8 bytes long",
    })?;
    Ok(u64::from_le_bytes(b))
}

/// Little-endian u32 at `at`; callers have checked the length.
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// XOR of the first 127 little-endian u32 of the base block, with 0 and !0 remapped as Windows
/// does.
fn header_checksum(data: &[u8]) -> u32 {
    let sum = (0..127).fold(0u32, |acc, i| acc ^ le32(data, i * 4));
    match sum {
        0 => 1,
        0xFFFF_FFFF => 0xFFFF_FFFE,
        s => s,
    }
}

/// Key and value names: Latin-1 when "compressed", else UTF-16LE.
fn decode_name(raw: &[u8], compressed: bool) -> String {
    if compressed {
        raw.iter().map(|&b| char::from(b)).collect()
    } else {
        decode_utf16(raw)
    }
}

fn decode_utf16(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// A UTF-16LE string up to its first NUL (an odd trailing byte is dropped).
fn utf16_string(raw: &[u8]) -> String {
    let end = raw
        .chunks_exact(2)
        .position(|c| c == [0, 0])
        .map_or(raw.len(), |i| i * 2);
    decode_utf16(&raw[..end])
}

/// The strings of a `REG_MULTI_SZ`: NUL-separated, ended by an empty string.
fn utf16_strings(raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 2 {
        let s = utf16_string(rest);
        if s.is_empty() && rest[..2] == [0, 0] {
            break;
        }
        let used = rest
            .chunks_exact(2)
            .position(|c| c == [0, 0])
            .map_or(rest.len(), |i| i * 2 + 2);
        out.push(s);
        rest = &rest[used.min(rest.len())..];
    }
    out
}

/// Registry names compare case-insensitively.
pub(crate) fn names_equal(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}
