//! The list of Btrfs subvolumes, read from the root tree.
//!
//! lambutter opens a subvolume by id or path but keeps its B-tree search private, so this is a
//! small reader of its own: superblock, chunk map (system array plus chunk tree), then the root
//! tree's `ROOT_ITEM`, `ROOT_BACKREF` and the `default` `DIR_ITEM`, and `INODE_REF`s in a parent
//! subvolume's tree to spell the directories between it and a nested subvolume. Single device
//! only (SINGLE, DUP and RAID1* chunks read their copy on this device). Node checksums are not
//! verified; every node is checked to be where its header says and at the level its parent
//! says, and every walk is bounded in nodes, items and path length.

use crate::{Error, Result};
use guestkit_block::BlockSource;
use std::collections::{BTreeMap, HashMap};

/// One subvolume, as `btrfs subvolume list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtrfsSubvolume {
    /// The subvolume id (256 and up; the top level, 5, is not listed).
    pub id: u64,
    /// Path from the top level without a leading `/`, e.g. `@`, `@home`, `@/var/lib/machines`.
    pub path: String,
    /// Id of the subvolume holding it (5 for the top level).
    pub parent_id: u64,
    /// Whether it is the default subvolume (what a mount without `subvol=` shows).
    pub default: bool,
    /// Whether it is read-only (`BTRFS_ROOT_SUBVOL_RDONLY`).
    pub read_only: bool,
}

const SUPER_OFFSET: u64 = 0x10000;
const SUPER_LEN: usize = 0x32b + SYS_CHUNK_ARRAY_MAX;
const SYS_CHUNK_ARRAY_MAX: usize = 2048;
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const HEADER_LEN: usize = 101;
const KEY_LEN: usize = 17;
const KEY_PTR_LEN: usize = 33;
const ITEM_LEN: usize = 25;
const CHUNK_LEN: usize = 48;
const STRIPE_LEN: usize = 32;

const TOP_LEVEL: u64 = 5;
const ROOT_TREE_DIR: u64 = 6;
const FIRST_FREE: u64 = 256;
/// `BTRFS_LAST_FREE_OBJECTID` (-256): ids above it are internal trees.
const LAST_FREE: u64 = u64::MAX - 255;
const INODE_REF: u8 = 12;
const DIR_ITEM: u8 = 84;
const ROOT_ITEM: u8 = 132;
const ROOT_BACKREF: u8 = 144;
const CHUNK_ITEM: u8 = 228;
const ROOT_SUBVOL_RDONLY: u64 = 1;
/// Block group profile bits that stripe data across devices (RAID0, RAID10, RAID5, RAID6).
const STRIPED: u64 = (1 << 3) | (1 << 6) | (1 << 7) | (1 << 8);

/// Most tree nodes read for one listing (320 MiB at the largest node size); a root tree of
/// thousands of subvolumes needs a few hundred.
const MAX_NODES: usize = 20_000;
/// Deepest B-tree accepted (Linux: `BTRFS_MAX_LEVEL` 8).
const MAX_LEVEL: u8 = 8;
/// Most subvolumes listed.
const MAX_SUBVOLUMES: usize = 10_000;
/// Longest path spelled (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// Lists the subvolumes of the Btrfs filesystem on `src`, sorted by id.
pub fn list(src: &dyn BlockSource) -> Result<Vec<BtrfsSubvolume>> {
    let mut r = Reader::open(src)?;
    let root_tree = (r.sb.root, r.sb.root_level);
    let mut roots: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // id -> (flags, refs)
    let mut backrefs: HashMap<u64, (u64, u64, Vec<u8>)> = HashMap::new(); // id -> (parent, dirid, name)
    let mut default = None;
    r.walk(root_tree, Key::MIN, Key::MAX, &mut |key, data| {
        match key.kind {
            ROOT_ITEM if is_subvolume(key.objectid) => {
                let flags = le64(data, 208).ok_or_else(|| short("root item"))?;
                let refs = le32(data, 216).ok_or_else(|| short("root item"))?;
                if roots.len() >= MAX_SUBVOLUMES {
                    return Err(Error::Limit(format!(
                        "more than {MAX_SUBVOLUMES} subvolumes"
                    )));
                }
                roots.insert(key.objectid, (flags, u64::from(refs)));
            }
            ROOT_BACKREF if is_subvolume(key.objectid) => {
                let (dirid, name) = root_ref(data)?;
                if backrefs.len() >= MAX_SUBVOLUMES {
                    return Err(Error::Limit(format!(
                        "more than {MAX_SUBVOLUMES} subvolumes"
                    )));
                }
                backrefs.insert(key.objectid, (key.offset, dirid, name.to_vec()));
            }
            DIR_ITEM if key.objectid == ROOT_TREE_DIR => {
                if let Some(id) = default_entry(data)? {
                    default = Some(id);
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    // As lambutter (and Linux) choose: the `default` entry, else the superblock's hint.
    let default = default.unwrap_or(match r.sb.root_dir_objectid {
        0 | ROOT_TREE_DIR => TOP_LEVEL,
        id => id,
    });

    let mut paths: HashMap<u64, String> = HashMap::new();
    paths.insert(TOP_LEVEL, String::new());
    let mut out = Vec::new();
    for (&id, &(flags, refs)) in &roots {
        // A root without references is a deleted subvolume awaiting cleanup.
        if id == TOP_LEVEL || refs == 0 || !backrefs.contains_key(&id) {
            continue;
        }
        let Some(path) = path_of(&mut r, id, &roots, &backrefs, &mut paths)? else {
            continue;
        };
        let parent_id = backrefs.get(&id).map_or(TOP_LEVEL, |b| b.0);
        out.push(BtrfsSubvolume {
            id,
            path,
            parent_id,
            default: id == default,
            read_only: flags & ROOT_SUBVOL_RDONLY != 0,
        });
    }
    Ok(out)
}

fn is_subvolume(id: u64) -> bool {
    id == TOP_LEVEL || (FIRST_FREE..=LAST_FREE).contains(&id)
}

/// The path of subvolume `id` from the top level, or `None` when its chain of parents does not
/// reach the top level through live subvolumes (an orphan, or a loop in a corrupt image).
fn path_of(
    r: &mut Reader<'_>,
    id: u64,
    roots: &BTreeMap<u64, (u64, u64)>,
    backrefs: &HashMap<u64, (u64, u64, Vec<u8>)>,
    paths: &mut HashMap<u64, String>,
) -> Result<Option<String>> {
    // The chain up to the first subvolume whose path is known.
    let mut chain = Vec::new();
    let mut cur = id;
    while !paths.contains_key(&cur) {
        if chain.len() > roots.len() || chain.contains(&cur) {
            return Ok(None);
        }
        match backrefs.get(&cur) {
            Some((parent, _, _)) if roots.get(parent).is_some_and(|r| r.1 > 0) => {
                chain.push(cur);
                cur = *parent;
            }
            _ => return Ok(None),
        }
    }
    for &child in chain.iter().rev() {
        let Some((parent, dirid, name)) = backrefs.get(&child) else {
            return Ok(None);
        };
        let mut path = paths.get(parent).cloned().unwrap_or_default();
        let tree = r.tree_of(*parent)?;
        for component in r.dir_path(tree, *dirid)? {
            push_component(&mut path, &component)?;
        }
        push_component(&mut path, name)?;
        paths.insert(child, path);
    }
    Ok(paths.get(&id).cloned())
}

fn push_component(path: &mut String, name: &[u8]) -> Result<()> {
    if !path.is_empty() {
        path.push('/');
    }
    path.push_str(&String::from_utf8_lossy(name));
    if path.len() > MAX_PATH {
        return Err(Error::Limit(format!(
            "a subvolume path longer than {MAX_PATH} bytes"
        )));
    }
    Ok(())
}

/// `btrfs_root_ref`: dirid (8), sequence (8), name length (2), name.
fn root_ref(data: &[u8]) -> Result<(u64, &[u8])> {
    let dirid = le64(data, 0).ok_or_else(|| short("root ref"))?;
    let len = le16(data, 16).ok_or_else(|| short("root ref"))?;
    let name = data
        .get(18..18 + usize::from(len))
        .ok_or_else(|| short("root ref"))?;
    Ok((dirid, name))
}

/// The subvolume the `default` entry of a root-tree `DIR_ITEM` names, if it is that entry.
fn default_entry(data: &[u8]) -> Result<Option<u64>> {
    let mut p = 0usize;
    // Entries with the same name hash share one item: location key (17), transid (8),
    // data length (2), name length (2), type (1), name, data.
    while p < data.len() {
        let objectid = le64(data, p).ok_or_else(|| short("dir item"))?;
        let data_len = le16(data, p + 25).ok_or_else(|| short("dir item"))?;
        let name_len = le16(data, p + 27).ok_or_else(|| short("dir item"))?;
        let name_at = p + 30;
        let name = data
            .get(name_at..name_at + usize::from(name_len))
            .ok_or_else(|| short("dir item"))?;
        if name == b"default" {
            return Ok(Some(objectid));
        }
        p = name_at + usize::from(name_len) + usize::from(data_len);
    }
    Ok(None)
}

fn short(what: &str) -> Error {
    Error::corrupt("btrfs", format!("{what} too short"))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    objectid: u64,
    kind: u8,
    offset: u64,
}

impl Key {
    const MIN: Key = Key {
        objectid: 0,
        kind: 0,
        offset: 0,
    };
    const MAX: Key = Key {
        objectid: u64::MAX,
        kind: u8::MAX,
        offset: u64::MAX,
    };

    fn parse(b: &[u8], at: usize) -> Option<Key> {
        Some(Key {
            objectid: le64(b, at)?,
            kind: *b.get(at + 8)?,
            offset: le64(b, at + 9)?,
        })
    }
}

struct Superblock {
    root: u64,
    root_level: u8,
    chunk_root: u64,
    chunk_root_level: u8,
    root_dir_objectid: u64,
    nodesize: usize,
    devid: u64,
}

/// A logical range and where this device holds it.
struct Chunk {
    logical: u64,
    length: u64,
    physical: u64,
}

struct Reader<'a> {
    src: &'a dyn BlockSource,
    sb: Superblock,
    chunks: Vec<Chunk>,
    nodes_read: usize,
}

impl<'a> Reader<'a> {
    fn open(src: &'a dyn BlockSource) -> Result<Self> {
        let mut b = vec![0u8; SUPER_LEN];
        src.read_at(SUPER_OFFSET, &mut b)?;
        if &b[0x40..0x48] != MAGIC {
            return Err(Error::Unsupported("not btrfs".into()));
        }
        let field = |at| le64(&b, at).ok_or_else(|| short("superblock"));
        let nodesize = le32(&b, 0x94).ok_or_else(|| short("superblock"))? as usize;
        if !(4096..=65536).contains(&nodesize) || !nodesize.is_power_of_two() {
            return Err(Error::corrupt("btrfs", format!("node size {nodesize}")));
        }
        let sb = Superblock {
            root: field(0x50)?,
            chunk_root: field(0x58)?,
            root_dir_objectid: field(0x80)?,
            nodesize,
            root_level: b[0xc6],
            chunk_root_level: b[0xc7],
            devid: field(0xc9)?,
        };
        let array_len = le32(&b, 0xa0).ok_or_else(|| short("superblock"))? as usize;
        let array = b
            .get(0x32b..0x32b + array_len)
            .ok_or_else(|| Error::corrupt("btrfs", "system chunk array too long"))?;
        let mut r = Reader {
            src,
            chunks: Vec::new(),
            sb,
            nodes_read: 0,
        };
        let mut p = 0usize;
        while p < array.len() {
            let key = Key::parse(array, p).ok_or_else(|| short("system chunk array"))?;
            if key.kind != CHUNK_ITEM {
                return Err(Error::corrupt(
                    "btrfs",
                    "system chunk array holds a non-chunk",
                ));
            }
            let used = r.add_chunk(key.offset, &array[p + KEY_LEN..])?;
            p += KEY_LEN + used;
        }
        let chunk_tree = (r.sb.chunk_root, r.sb.chunk_root_level);
        let mut found = Vec::new();
        r.walk(
            chunk_tree,
            Key::MIN,
            Key::MAX,
            &mut |key: Key, data: &[u8]| {
                if key.kind == CHUNK_ITEM {
                    if found.len() >= MAX_NODES {
                        return Err(Error::Limit("too many chunks".into()));
                    }
                    found.push((key.offset, data.to_vec()));
                }
                Ok(())
            },
        )?;
        for (logical, data) in found {
            if !r.chunks.iter().any(|c| c.logical == logical) {
                r.add_chunk(logical, &data)?;
            }
        }
        Ok(r)
    }

    /// Adds the chunk item at the start of `data` for `logical`; returns its length in bytes.
    fn add_chunk(&mut self, logical: u64, data: &[u8]) -> Result<usize> {
        let length = le64(data, 0).ok_or_else(|| short("chunk"))?;
        let kind = le64(data, 24).ok_or_else(|| short("chunk"))?;
        let stripes = usize::from(le16(data, 44).ok_or_else(|| short("chunk"))?);
        let used = CHUNK_LEN + stripes * STRIPE_LEN;
        if stripes == 0 || data.len() < used {
            return Err(short("chunk"));
        }
        if kind & STRIPED == 0 {
            // Every stripe is a whole copy: take one on this device.
            let physical = (0..stripes)
                .map(|i| CHUNK_LEN + i * STRIPE_LEN)
                .find(|&at| le64(data, at) == Some(self.sb.devid))
                .and_then(|at| le64(data, at + 8));
            if let Some(physical) = physical {
                self.chunks.push(Chunk {
                    logical,
                    length,
                    physical,
                });
            }
        }
        // Striped chunks stay unmapped: a read inside one fails as unsupported.
        Ok(used)
    }

    fn physical(&self, logical: u64) -> Result<u64> {
        self.chunks
            .iter()
            .find(|c| logical >= c.logical && logical - c.logical < c.length)
            .map(|c| c.physical + (logical - c.logical))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "btrfs block {logical} is in no chunk this reader maps (striped or on another device)"
                ))
            })
    }

    fn node(&mut self, logical: u64, level: u8) -> Result<Vec<u8>> {
        self.nodes_read += 1;
        if self.nodes_read > MAX_NODES {
            return Err(Error::Limit(format!(
                "more than {MAX_NODES} btrfs tree nodes for one listing"
            )));
        }
        let mut b = vec![0u8; self.sb.nodesize];
        self.src.read_at(self.physical(logical)?, &mut b)?;
        if le64(&b, 0x30) != Some(logical) || b[0x64] != level {
            return Err(Error::corrupt(
                "btrfs",
                format!("tree node at {logical} is not the node its parent points to"),
            ));
        }
        Ok(b)
    }

    /// Calls `visit` on every leaf item with `lo <= key <= hi` in the tree at `(root, level)`.
    fn walk(
        &mut self,
        (root, level): (u64, u8),
        lo: Key,
        hi: Key,
        visit: &mut dyn FnMut(Key, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if level >= MAX_LEVEL {
            return Err(Error::corrupt("btrfs", format!("tree level {level}")));
        }
        let node = self.node(root, level)?;
        let count = le32(&node, 0x60).ok_or_else(|| short("node"))? as usize;
        let body = &node[HEADER_LEN..];
        if level == 0 {
            if count > body.len() / ITEM_LEN {
                return Err(Error::corrupt("btrfs", "leaf item count"));
            }
            for i in 0..count {
                let at = i * ITEM_LEN;
                let key = Key::parse(body, at).ok_or_else(|| short("leaf"))?;
                if key < lo || key > hi {
                    continue;
                }
                let off = le32(body, at + 17).ok_or_else(|| short("leaf"))? as usize;
                let size = le32(body, at + 21).ok_or_else(|| short("leaf"))? as usize;
                let data = body
                    .get(off..off.saturating_add(size))
                    .ok_or_else(|| Error::corrupt("btrfs", "leaf item outside its node"))?;
                visit(key, data)?;
            }
            return Ok(());
        }
        if count > body.len() / KEY_PTR_LEN {
            return Err(Error::corrupt("btrfs", "node pointer count"));
        }
        let mut children = Vec::with_capacity(count);
        for i in 0..count {
            let at = i * KEY_PTR_LEN;
            let key = Key::parse(body, at).ok_or_else(|| short("node"))?;
            let ptr = le64(body, at + KEY_LEN).ok_or_else(|| short("node"))?;
            children.push((key, ptr));
        }
        for (i, &(key, ptr)) in children.iter().enumerate() {
            // Child i holds keys from its own key up to the next child's.
            let next = children.get(i + 1).map(|c| c.0);
            if key > hi || next.is_some_and(|n| n <= lo) {
                continue;
            }
            self.walk((ptr, level - 1), lo, hi, visit)?;
        }
        Ok(())
    }

    /// The tree root and level of subvolume `id`, from its `ROOT_ITEM`.
    fn tree_of(&mut self, id: u64) -> Result<(u64, u8)> {
        let mut found = None;
        let lo = Key {
            objectid: id,
            kind: ROOT_ITEM,
            offset: 0,
        };
        let hi = Key {
            offset: u64::MAX,
            ..lo
        };
        let root_tree = (self.sb.root, self.sb.root_level);
        self.walk(root_tree, lo, hi, &mut |_, data| {
            let bytenr = le64(data, 176).ok_or_else(|| short("root item"))?;
            let level = *data.get(238).ok_or_else(|| short("root item"))?;
            found = Some((bytenr, level));
            Ok(())
        })?;
        found.ok_or_else(|| Error::corrupt("btrfs", format!("subvolume {id} has no root item")))
    }

    /// Names of the directories from the root of the subvolume at `tree` down to directory
    /// `dir`, from its `INODE_REF`s.
    fn dir_path(&mut self, tree: (u64, u8), mut dir: u64) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut len = 0usize;
        while dir != FIRST_FREE {
            let lo = Key {
                objectid: dir,
                kind: INODE_REF,
                offset: 0,
            };
            let hi = Key {
                offset: u64::MAX,
                ..lo
            };
            let mut up = None;
            self.walk(tree, lo, hi, &mut |key, data| {
                if up.is_none() {
                    // index (8), name length (2), name.
                    let n = usize::from(le16(data, 8).ok_or_else(|| short("inode ref"))?);
                    let name = data.get(10..10 + n).ok_or_else(|| short("inode ref"))?;
                    up = Some((key.offset, name.to_vec()));
                }
                Ok(())
            })?;
            let (parent, name) = up.ok_or_else(|| {
                Error::corrupt("btrfs", format!("directory {dir} has no inode ref"))
            })?;
            len += name.len() + 1;
            if len > MAX_PATH || parent == dir {
                return Err(Error::Limit(format!(
                    "a subvolume path longer than {MAX_PATH} bytes"
                )));
            }
            names.push(name);
            dir = parent;
        }
        names.reverse();
        Ok(names)
    }
}
