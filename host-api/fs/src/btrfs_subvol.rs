//! The list of Btrfs subvolumes, read from the root tree.
//!
//! lambutter opens a subvolume by id or path but keeps its B-tree search private, so this is a
//! small reader of its own: superblock, chunk map (system array plus chunk tree), then the root
//! tree's `ROOT_ITEM`, `ROOT_BACKREF` and the `default` `DIR_ITEM`, and `INODE_REF`s in a parent
//! subvolume's tree to spell the directories between it and a nested subvolume. Single device
//! only (SINGLE, DUP and RAID1* chunks read their copy on this device). Node checksums are not
//! verified; every node is checked to be where its header says and at the level its parent
//! says, to be reached once per walk, and (leaves) to hold ordered, disjoint items inside it, as
//! Linux's tree-checker does; names are checked as Linux checks them; every walk is bounded in
//! nodes, items and path length, and each subvolume and directory is spelled once.

use crate::{Error, Result};
use guestkit_block::BlockSource;
use std::collections::{BTreeMap, HashMap, HashSet};

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
    pub is_default: bool,
    /// Whether it is read-only (`BTRFS_ROOT_SUBVOL_RDONLY`).
    pub read_only: bool,
}

/// Byte offset of the primary superblock.
pub(crate) const SUPER_OFFSET: u64 = 0x10000;
const SUPER_LEN: usize = 0x32b + SYS_CHUNK_ARRAY_MAX;
/// Size of a superblock's system chunk array.
pub(crate) const SYS_CHUNK_ARRAY_MAX: usize = 2048;
/// The superblock's magic, at offset 0x40.
pub(crate) const MAGIC: &[u8; 8] = b"_BHRfS_M";
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

/// Most tree nodes read for one listing (1.25 GiB at the largest node size, 64 KiB; 312 MiB at
/// the usual 16 KiB). Every node is read once per listing but for the few on the way to each
/// directory holding a nested subvolume, so a root tree of thousands of subvolumes needs a few
/// hundred.
const MAX_NODES: usize = 20_000;
/// Most chunks mapped (100 TiB in 1 GiB chunks).
const MAX_CHUNKS: usize = 100_000;
/// Deepest B-tree accepted (Linux: `BTRFS_MAX_LEVEL` 8).
const MAX_LEVEL: u8 = 8;
/// Most subvolumes listed.
const MAX_SUBVOLUMES: usize = 10_000;
/// Longest path spelled (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;
/// Longest name of a directory entry (`BTRFS_NAME_LEN`).
const NAME_LEN: usize = 255;

/// Lists the subvolumes of the Btrfs filesystem on `src`, sorted by id.
pub fn list(src: &dyn BlockSource) -> Result<Vec<BtrfsSubvolume>> {
    let mut r = Reader::open(src)?;
    let tree = RootTree::read(&mut r)?;
    // The default as lambutter resolves it, which is what `open-filesystem` opens: the root
    // tree's `default` entry, else the superblock's `root_dir_objectid` taken as a subvolume id
    // (0 and 6 meaning the top level). Linux instead takes `root_dir_objectid` as the directory
    // to look up `default` in, falling back to the top level; the two agree on filesystems
    // mkfs.btrfs and `btrfs subvolume set-default` make, whose `root_dir_objectid` is 6.
    let default = tree.default.unwrap_or(match r.sb.root_dir_objectid {
        0 | ROOT_TREE_DIR => TOP_LEVEL,
        id => id,
    });

    let mut paths = Paths::new(&tree);
    let mut out = Vec::new();
    for (&id, root) in &tree.roots {
        // A root without references is a deleted subvolume awaiting cleanup.
        if id == TOP_LEVEL || root.refs == 0 {
            continue;
        }
        let Some(backref) = tree.backrefs.get(&id) else {
            continue;
        };
        let Some(path) = paths.path_of(&mut r, id)? else {
            continue;
        };
        out.push(BtrfsSubvolume {
            id,
            path,
            parent_id: backref.parent,
            is_default: id == default,
            read_only: root.flags & ROOT_SUBVOL_RDONLY != 0,
        });
    }
    Ok(out)
}

fn is_subvolume(id: u64) -> bool {
    id == TOP_LEVEL || (FIRST_FREE..=LAST_FREE).contains(&id)
}

/// A subvolume's `ROOT_ITEM`: what the listing needs of it.
struct Root {
    flags: u64,
    refs: u32,
    /// Its tree: root node and level.
    tree: (u64, u8),
}

/// A subvolume's `ROOT_BACKREF`: where it sits in its parent.
struct Backref {
    parent: u64,
    /// The directory of the parent subvolume holding it.
    dirid: u64,
    name: String,
}

/// What one walk of the root tree gives: every subvolume's root and place, and the `default`.
struct RootTree {
    roots: BTreeMap<u64, Root>,
    backrefs: HashMap<u64, Backref>,
    default: Option<u64>,
}

impl RootTree {
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let mut t = RootTree {
            roots: BTreeMap::new(),
            backrefs: HashMap::new(),
            default: None,
        };
        let root_tree = (r.sb.root, r.sb.root_level);
        r.walk(root_tree, Key::MIN, Key::MAX, &mut |key, data| {
            match key.kind {
                ROOT_ITEM if is_subvolume(key.objectid) => {
                    let field = |at| le64(data, at).ok_or_else(|| short("root item"));
                    let root = Root {
                        flags: field(208)?,
                        refs: le32(data, 216).ok_or_else(|| short("root item"))?,
                        tree: (
                            field(176)?,
                            *data.get(238).ok_or_else(|| short("root item"))?,
                        ),
                    };
                    if t.roots.len() >= MAX_SUBVOLUMES {
                        return Err(too_many());
                    }
                    t.roots.insert(key.objectid, root);
                }
                ROOT_BACKREF if is_subvolume(key.objectid) => {
                    let (dirid, name) = root_ref(data)?;
                    if t.backrefs.len() >= MAX_SUBVOLUMES {
                        return Err(too_many());
                    }
                    let backref = Backref {
                        parent: key.offset,
                        dirid,
                        name: name_str(name)?.to_owned(),
                    };
                    t.backrefs.insert(key.objectid, backref);
                }
                DIR_ITEM if key.objectid == ROOT_TREE_DIR => {
                    if let Some(id) = default_entry(data)? {
                        t.default = Some(id);
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(t)
    }
}

fn too_many() -> Error {
    Error::Limit(format!("more than {MAX_SUBVOLUMES} subvolumes"))
}

/// Spells subvolume paths, each subvolume and each directory once: a corrupt image can chain
/// thousands of backrefs, and a real one can hold thousands of subvolumes in one directory.
struct Paths<'t> {
    tree: &'t RootTree,
    /// Subvolume id -> its path, or `None` when its chain of parents does not reach the top
    /// level through live subvolumes.
    subvolumes: HashMap<u64, Option<String>>,
    /// (subvolume id, directory) -> the directory's path inside that subvolume.
    dirs: HashMap<(u64, u64), String>,
}

impl<'t> Paths<'t> {
    fn new(tree: &'t RootTree) -> Self {
        Paths {
            tree,
            subvolumes: HashMap::from([(TOP_LEVEL, Some(String::new()))]),
            dirs: HashMap::new(),
        }
    }

    /// The path of subvolume `id` from the top level, or `None` when its chain of parents does
    /// not reach the top level through live subvolumes (an orphan, or a loop in a corrupt
    /// image).
    fn path_of(&mut self, r: &mut Reader<'_>, id: u64) -> Result<Option<String>> {
        // The chain up to the first subvolume whose fate is known.
        let mut chain = Vec::new();
        let mut in_chain = HashSet::new();
        let mut cur = id;
        let reached = loop {
            if let Some(known) = self.subvolumes.get(&cur) {
                break known.is_some();
            }
            if !in_chain.insert(cur) {
                break false;
            }
            chain.push(cur);
            match self.tree.backrefs.get(&cur) {
                Some(b) if self.tree.roots.get(&b.parent).is_some_and(|p| p.refs > 0) => {
                    cur = b.parent;
                }
                _ => break false,
            }
        };
        if !reached {
            for child in chain {
                self.subvolumes.insert(child, None);
            }
            return Ok(None);
        }
        for &child in chain.iter().rev() {
            let tree = self.tree;
            let b = tree
                .backrefs
                .get(&child)
                .ok_or_else(|| Error::corrupt("btrfs", format!("subvolume {child} lost")))?;
            let parent_tree = tree.roots.get(&b.parent).map(|p| p.tree).ok_or_else(|| {
                Error::corrupt("btrfs", format!("subvolume {} has no root item", b.parent))
            })?;
            let mut path = self
                .subvolumes
                .get(&b.parent)
                .cloned()
                .flatten()
                .unwrap_or_default();
            let dir = self.dir_path(r, b.parent, parent_tree, b.dirid)?;
            push_component(&mut path, &dir)?;
            push_component(&mut path, &b.name)?;
            self.subvolumes.insert(child, Some(path));
        }
        Ok(self.subvolumes.get(&id).cloned().flatten())
    }

    /// The path of directory `dir` inside subvolume `subvolume` (tree `tree`), from the
    /// `INODE_REF`s between it and the subvolume's root directory.
    fn dir_path(
        &mut self,
        r: &mut Reader<'_>,
        subvolume: u64,
        tree: (u64, u8),
        dir: u64,
    ) -> Result<String> {
        let mut chain = Vec::new();
        let mut in_chain = HashSet::new();
        let mut cur = dir;
        // Up to the root directory or a directory already spelled. A loop is found by the set
        // however long it is; the node limit bounds the lookups.
        let mut path = loop {
            if cur == FIRST_FREE {
                break String::new();
            }
            if let Some(known) = self.dirs.get(&(subvolume, cur)) {
                break known.clone();
            }
            if !in_chain.insert(cur) {
                return Err(Error::corrupt(
                    "btrfs",
                    format!("directory loop at directory {cur} of subvolume {subvolume}"),
                ));
            }
            let (parent, name) = r.inode_ref(tree, cur)?;
            chain.push((cur, name));
            cur = parent;
        };
        for (dir, name) in chain.into_iter().rev() {
            push_component(&mut path, &name)?;
            self.dirs.insert((subvolume, dir), path.clone());
        }
        Ok(path)
    }
}

/// Appends `/component` (or just `component` to an empty path); an empty component adds
/// nothing.
fn push_component(path: &mut String, component: &str) -> Result<()> {
    if component.is_empty() {
        return Ok(());
    }
    if !path.is_empty() {
        path.push('/');
    }
    path.push_str(component);
    if path.len() > MAX_PATH {
        return Err(Error::Limit(format!(
            "a subvolume path longer than {MAX_PATH} bytes"
        )));
    }
    Ok(())
}

/// A directory entry name as Linux's tree-checker accepts it, as UTF-8.
fn name_str(name: &[u8]) -> Result<&str> {
    if name.is_empty()
        || name.len() > NAME_LEN
        || name == b"."
        || name == b".."
        || name.iter().any(|&c| c == b'/' || c == 0)
    {
        return Err(Error::corrupt(
            "btrfs",
            format!("bad name \"{}\"", name.escape_ascii()),
        ));
    }
    std::str::from_utf8(name).map_err(|_| {
        Error::Unsupported(format!(
            "btrfs name \"{}\" is not UTF-8, which subvolume paths are spelled in",
            name.escape_ascii()
        ))
    })
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    logical: u64,
    length: u64,
    physical: u64,
}

/// Parses the chunk item at the start of `data` for `logical`: the copy on device `devid`, if
/// this reader can use one, and the item's length in bytes.
fn parse_chunk(logical: u64, data: &[u8], devid: u64) -> Result<(Option<Chunk>, usize)> {
    let length = le64(data, 0).ok_or_else(|| short("chunk"))?;
    let kind = le64(data, 24).ok_or_else(|| short("chunk"))?;
    let stripes = usize::from(le16(data, 44).ok_or_else(|| short("chunk"))?);
    let used = CHUNK_LEN + stripes * STRIPE_LEN;
    if stripes == 0 || data.len() < used {
        return Err(short("chunk"));
    }
    if length == 0 || logical.checked_add(length).is_none() {
        return Err(Error::corrupt(
            "btrfs",
            format!("chunk at {logical} of length {length}"),
        ));
    }
    if kind & STRIPED != 0 {
        // Striped chunks stay unmapped: a read inside one fails as unsupported.
        return Ok((None, used));
    }
    // Every stripe is a whole copy: take one on this device.
    let physical = (0..stripes)
        .map(|i| CHUNK_LEN + i * STRIPE_LEN)
        .find(|&at| le64(data, at) == Some(devid))
        .and_then(|at| le64(data, at + 8));
    let Some(physical) = physical else {
        return Ok((None, used));
    };
    if physical.checked_add(length).is_none() {
        return Err(Error::corrupt(
            "btrfs",
            format!("chunk at {logical} placed past the end of any device ({physical})"),
        ));
    }
    Ok((
        Some(Chunk {
            logical,
            length,
            physical,
        }),
        used,
    ))
}

struct Reader<'a> {
    src: &'a dyn BlockSource,
    sb: Superblock,
    /// Chunks by logical start; they do not overlap.
    chunks: BTreeMap<u64, Chunk>,
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
        let devid = sb.devid;
        let mut r = Reader {
            src,
            chunks: BTreeMap::new(),
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
            let (chunk, used) = parse_chunk(key.offset, &array[p + KEY_LEN..], devid)?;
            if let Some(chunk) = chunk {
                r.add_chunk(chunk)?;
            }
            p += KEY_LEN + used;
        }
        let chunk_tree = (r.sb.chunk_root, r.sb.chunk_root_level);
        let mut found = Vec::new();
        r.walk(chunk_tree, Key::MIN, Key::MAX, &mut |key, data| {
            if key.kind == CHUNK_ITEM {
                if found.len() >= MAX_CHUNKS {
                    return Err(Error::Limit(format!("more than {MAX_CHUNKS} chunks")));
                }
                if let (Some(chunk), _) = parse_chunk(key.offset, data, devid)? {
                    found.push(chunk);
                }
            }
            Ok(())
        })?;
        for chunk in found {
            r.add_chunk(chunk)?;
        }
        Ok(r)
    }

    /// Maps `chunk`, unless one starting at the same address is mapped (the system chunks are
    /// in both the superblock and the chunk tree). Overlapping chunks are corrupt.
    fn add_chunk(&mut self, chunk: Chunk) -> Result<()> {
        if self.chunks.contains_key(&chunk.logical) {
            return Ok(());
        }
        let end = chunk.logical + chunk.length; // parse_chunk checked it
        let before = self.chunks.range(..chunk.logical).next_back();
        let after = self.chunks.range(chunk.logical..).next();
        if before.is_some_and(|(_, b)| b.logical + b.length > chunk.logical)
            || after.is_some_and(|(&start, _)| start < end)
        {
            return Err(Error::corrupt(
                "btrfs",
                format!("chunk at {} overlaps another", chunk.logical),
            ));
        }
        self.chunks.insert(chunk.logical, chunk);
        Ok(())
    }

    /// Where this device holds the `len` bytes at `logical`.
    fn physical(&self, logical: u64, len: usize) -> Result<u64> {
        let chunk = self
            .chunks
            .range(..=logical)
            .next_back()
            .map(|(_, c)| c)
            .filter(|c| logical - c.logical < c.length)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "btrfs block {logical} is in no chunk this reader maps (striped or on another device)"
                ))
            })?;
        let inside = logical - chunk.logical;
        if (len as u64) > chunk.length - inside {
            return Err(Error::corrupt(
                "btrfs",
                format!("tree node at {logical} runs past the end of its chunk"),
            ));
        }
        chunk
            .physical
            .checked_add(inside)
            .ok_or_else(|| Error::corrupt("btrfs", format!("block {logical} maps past 2^64")))
    }

    fn node(&mut self, logical: u64, level: u8) -> Result<Vec<u8>> {
        self.nodes_read += 1;
        if self.nodes_read > MAX_NODES {
            return Err(Error::Limit(format!(
                "more than {MAX_NODES} btrfs tree nodes for one listing"
            )));
        }
        let mut b = vec![0u8; self.sb.nodesize];
        self.src
            .read_at(self.physical(logical, self.sb.nodesize)?, &mut b)?;
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
        root: (u64, u8),
        lo: Key,
        hi: Key,
        visit: &mut dyn FnMut(Key, &[u8]) -> Result<()>,
    ) -> Result<()> {
        // A node reached twice (pointers fanning out to one node) would multiply the work.
        let mut seen = HashSet::new();
        self.walk_node(root, lo, hi, &mut seen, visit)
    }

    fn walk_node(
        &mut self,
        (bytenr, level): (u64, u8),
        lo: Key,
        hi: Key,
        seen: &mut HashSet<u64>,
        visit: &mut dyn FnMut(Key, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if level >= MAX_LEVEL {
            return Err(Error::corrupt("btrfs", format!("tree level {level}")));
        }
        if !seen.insert(bytenr) {
            return Err(Error::corrupt(
                "btrfs",
                format!("tree node at {bytenr} is reached twice"),
            ));
        }
        let node = self.node(bytenr, level)?;
        let count = le32(&node, 0x60).ok_or_else(|| short("node"))? as usize;
        let body = &node[HEADER_LEN..];
        if level == 0 {
            for (key, data) in leaf_items(body, count, bytenr)? {
                if lo <= key && key <= hi {
                    visit(key, data)?;
                }
            }
            return Ok(());
        }
        if count > body.len() / KEY_PTR_LEN {
            return Err(Error::corrupt("btrfs", "node pointer count"));
        }
        let mut children: Vec<(Key, u64)> = Vec::with_capacity(count);
        for i in 0..count {
            let at = i * KEY_PTR_LEN;
            let key = Key::parse(body, at).ok_or_else(|| short("node"))?;
            let ptr = le64(body, at + KEY_LEN).ok_or_else(|| short("node"))?;
            if children.last().is_some_and(|&(prev, _)| prev >= key) {
                return Err(Error::corrupt(
                    "btrfs",
                    format!("tree node at {bytenr}: keys out of order"),
                ));
            }
            children.push((key, ptr));
        }
        for (i, &(key, ptr)) in children.iter().enumerate() {
            // Child i holds keys from its own key up to the next child's.
            let next = children.get(i + 1).map(|c| c.0);
            if key > hi || next.is_some_and(|n| n <= lo) {
                continue;
            }
            self.walk_node((ptr, level - 1), lo, hi, seen, visit)?;
        }
        Ok(())
    }

    /// The parent directory and name of directory `dir` in the subvolume at `tree`, from its
    /// first `INODE_REF` (a directory has one).
    fn inode_ref(&mut self, tree: (u64, u8), dir: u64) -> Result<(u64, String)> {
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
                up = Some((key.offset, name_str(name)?.to_owned()));
            }
            Ok(())
        })?;
        up.ok_or_else(|| Error::corrupt("btrfs", format!("directory {dir} has no inode ref")))
    }
}

/// The items of a leaf whose item area is `body`, checked as Linux's tree-checker does: keys
/// strictly ascending, each item's data inside the leaf, past the item headers, and below the
/// previous item's data (so no two overlap).
fn leaf_items(body: &[u8], count: usize, bytenr: u64) -> Result<Vec<(Key, &[u8])>> {
    let bad = |what: &str| Error::corrupt("btrfs", format!("leaf at {bytenr}: {what}"));
    let headers = count
        .checked_mul(ITEM_LEN)
        .filter(|&h| h <= body.len())
        .ok_or_else(|| bad("item count"))?;
    let mut items: Vec<(Key, &[u8])> = Vec::with_capacity(count);
    let mut limit = body.len(); // the previous item's data start
    for i in 0..count {
        let at = i * ITEM_LEN;
        let key = Key::parse(body, at).ok_or_else(|| short("leaf"))?;
        if items.last().is_some_and(|&(prev, _)| prev >= key) {
            return Err(bad("keys out of order"));
        }
        let off = le32(body, at + 17).ok_or_else(|| short("leaf"))? as usize;
        let size = le32(body, at + 21).ok_or_else(|| short("leaf"))? as usize;
        let end = off.checked_add(size).ok_or_else(|| bad("item size"))?;
        if off < headers || end > body.len() {
            return Err(bad("item data outside the leaf's data area"));
        }
        if end > limit {
            return Err(bad("item data overlaps the previous item's"));
        }
        limit = off;
        items.push((key, &body[off..end]));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_block::MemSource;
    use std::sync::mpsc;
    use std::time::Duration;

    fn key(objectid: u64, kind: u8, offset: u64) -> Key {
        Key {
            objectid,
            kind,
            offset,
        }
    }

    /// A single-device image built node by node: one chunk maps logical to physical 1:1.
    struct Image {
        nodesize: usize,
        bytes: Vec<u8>,
        /// Whether the chunk tree holds the system chunk too, as mkfs.btrfs writes it.
        chunk_in_tree: bool,
    }

    impl Image {
        const FIRST_NODE: usize = 0x20000;

        fn new(nodesize: usize) -> Self {
            Image {
                nodesize,
                bytes: vec![0; Self::FIRST_NODE],
                chunk_in_tree: false,
            }
        }

        /// An image whose nodes start right after the superblock's 4 KiB, so that it is short
        /// past the superblock (what the fuzz target takes).
        fn compact(nodesize: usize) -> Self {
            Image {
                nodesize,
                bytes: vec![0; SUPER_OFFSET as usize + 4096],
                chunk_in_tree: true,
            }
        }

        /// A fresh node with its header; returns its address.
        fn alloc(&mut self, level: u8, count: usize) -> u64 {
            let at = self.bytes.len();
            self.bytes.resize(at + self.nodesize, 0);
            let n = &mut self.bytes[at..];
            n[0x30..0x38].copy_from_slice(&(at as u64).to_le_bytes());
            n[0x60..0x64].copy_from_slice(&(count as u32).to_le_bytes());
            n[0x64] = level;
            at as u64
        }

        fn put_key(&mut self, at: usize, k: Key) {
            self.bytes[at..at + 8].copy_from_slice(&k.objectid.to_le_bytes());
            self.bytes[at + 8] = k.kind;
            self.bytes[at + 9..at + 17].copy_from_slice(&k.offset.to_le_bytes());
        }

        /// A leaf with item headers as given: (key, data offset, data size).
        fn raw_leaf(&mut self, items: &[(Key, u32, u32)]) -> u64 {
            let node = self.alloc(0, items.len());
            for (i, &(k, off, size)) in items.iter().enumerate() {
                let at = node as usize + HEADER_LEN + i * ITEM_LEN;
                self.put_key(at, k);
                self.bytes[at + 17..at + 21].copy_from_slice(&off.to_le_bytes());
                self.bytes[at + 21..at + 25].copy_from_slice(&size.to_le_bytes());
            }
            node
        }

        /// A well-formed leaf of `items` (sorted), data laid out from the end down.
        fn leaf(&mut self, items: &[(Key, Vec<u8>)]) -> u64 {
            let node = self.alloc(0, items.len());
            let mut end = self.nodesize - HEADER_LEN;
            for (i, (k, data)) in items.iter().enumerate() {
                let at = node as usize + HEADER_LEN + i * ITEM_LEN;
                end -= data.len();
                self.put_key(at, *k);
                self.bytes[at + 17..at + 21].copy_from_slice(&(end as u32).to_le_bytes());
                self.bytes[at + 21..at + 25].copy_from_slice(&(data.len() as u32).to_le_bytes());
                let d = node as usize + HEADER_LEN + end;
                self.bytes[d..d + data.len()].copy_from_slice(data);
            }
            node
        }

        /// An internal node pointing at `children`.
        fn node(&mut self, level: u8, children: &[(Key, u64)]) -> u64 {
            let node = self.alloc(level, children.len());
            for (i, &(k, ptr)) in children.iter().enumerate() {
                let at = node as usize + HEADER_LEN + i * KEY_PTR_LEN;
                self.put_key(at, k);
                self.bytes[at + 17..at + 25].copy_from_slice(&ptr.to_le_bytes());
            }
            node
        }

        /// A tree of `items`: one leaf, or leaves under one node.
        fn tree(&mut self, mut items: Vec<(Key, Vec<u8>)>) -> (u64, u8) {
            items.sort_by_key(|i| i.0);
            let room = self.nodesize - HEADER_LEN;
            let mut leaves = Vec::new();
            let mut start = 0;
            while start < items.len() || leaves.is_empty() {
                let mut used = 0;
                let mut end = start;
                while end < items.len() && used + ITEM_LEN + items[end].1.len() <= room {
                    used += ITEM_LEN + items[end].1.len();
                    end += 1;
                }
                let first = items.get(start).map_or(Key::MIN, |i| i.0);
                leaves.push((first, self.leaf(&items[start..end])));
                start = end;
            }
            if leaves.len() == 1 {
                (leaves[0].1, 0)
            } else {
                (self.node(1, &leaves), 1)
            }
        }

        /// The superblock, its one system chunk (`physical` for logical 0) and the chunk tree
        /// (empty, or holding that chunk for a compact image); the image as a device.
        fn finish(mut self, root: (u64, u8), physical: u64) -> MemSource {
            // The chunk spans the whole image, chunk tree leaf included.
            let len = (self.bytes.len() + self.nodesize) as u64;
            let chunk = chunk_item(len, physical);
            let chunk_items = if self.chunk_in_tree {
                vec![(key(256, CHUNK_ITEM, 0), chunk.clone())]
            } else {
                vec![]
            };
            let chunk_root = self.leaf(&chunk_items);
            let sb = &mut self.bytes[SUPER_OFFSET as usize..];
            sb[0x40..0x48].copy_from_slice(MAGIC);
            sb[0x50..0x58].copy_from_slice(&root.0.to_le_bytes());
            sb[0x58..0x60].copy_from_slice(&chunk_root.to_le_bytes());
            sb[0x80..0x88].copy_from_slice(&ROOT_TREE_DIR.to_le_bytes());
            sb[0x90..0x94].copy_from_slice(&4096u32.to_le_bytes()); // sectorsize
            sb[0x94..0x98].copy_from_slice(&(self.nodesize as u32).to_le_bytes());
            sb[0xa0..0xa4]
                .copy_from_slice(&((KEY_LEN + CHUNK_LEN + STRIPE_LEN) as u32).to_le_bytes());
            sb[0xc6] = root.1;
            sb[0xc7] = 0;
            sb[0xc9..0xd1].copy_from_slice(&1u64.to_le_bytes());
            let a = 0x32b;
            sb[a..a + 8].copy_from_slice(&256u64.to_le_bytes()); // key: chunk tree objectid
            sb[a + 8] = CHUNK_ITEM;
            sb[a + 9..a + 17].copy_from_slice(&0u64.to_le_bytes());
            let c = a + KEY_LEN;
            sb[c..c + chunk.len()].copy_from_slice(&chunk);
            MemSource(self.bytes)
        }
    }

    /// A SYSTEM chunk item of one stripe, on device 1 at `physical`.
    fn chunk_item(len: u64, physical: u64) -> Vec<u8> {
        let mut c = vec![0u8; CHUNK_LEN + STRIPE_LEN];
        c[0..8].copy_from_slice(&len.to_le_bytes());
        c[24..32].copy_from_slice(&2u64.to_le_bytes()); // SYSTEM
        c[44..46].copy_from_slice(&1u16.to_le_bytes());
        c[48..56].copy_from_slice(&1u64.to_le_bytes()); // devid
        c[56..64].copy_from_slice(&physical.to_le_bytes());
        c
    }

    fn root_item(tree: (u64, u8)) -> Vec<u8> {
        let mut d = vec![0u8; 239];
        d[176..184].copy_from_slice(&tree.0.to_le_bytes());
        d[216..220].copy_from_slice(&1u32.to_le_bytes());
        d[238] = tree.1;
        d
    }

    fn root_backref(dirid: u64, name: &[u8]) -> Vec<u8> {
        let mut d = dirid.to_le_bytes().to_vec();
        d.extend_from_slice(&0u64.to_le_bytes());
        d.extend_from_slice(&(name.len() as u16).to_le_bytes());
        d.extend_from_slice(name);
        d
    }

    fn inode_ref(name: &[u8]) -> Vec<u8> {
        let mut d = 0u64.to_le_bytes().to_vec();
        d.extend_from_slice(&(name.len() as u16).to_le_bytes());
        d.extend_from_slice(name);
        d
    }

    /// Items of subvolume `id` in directory `dirid` of `parent`, its tree at `tree`.
    fn subvolume(
        id: u64,
        parent: u64,
        dirid: u64,
        name: &[u8],
        tree: (u64, u8),
    ) -> [(Key, Vec<u8>); 2] {
        [
            (key(id, ROOT_ITEM, 0), root_item(tree)),
            (key(id, ROOT_BACKREF, parent), root_backref(dirid, name)),
        ]
    }

    /// `root_item` of a read-only subvolume.
    fn read_only(mut item: Vec<u8>) -> Vec<u8> {
        item[208..216].copy_from_slice(&ROOT_SUBVOL_RDONLY.to_le_bytes());
        item
    }

    /// The root tree directory's `default` entry, naming subvolume `id`: its key and data.
    fn default_entry_item(id: u64) -> (Key, Vec<u8>) {
        // btrfs_name_hash("default"): crc32c of the name, seeded with !1.
        const DEFAULT_HASH: u64 = 2_378_154_706;
        let mut d = id.to_le_bytes().to_vec();
        d.push(ROOT_ITEM);
        d.extend_from_slice(&u64::MAX.to_le_bytes());
        d.extend_from_slice(&0u64.to_le_bytes()); // transid
        d.extend_from_slice(&0u16.to_le_bytes()); // data length
        d.extend_from_slice(&7u16.to_le_bytes()); // name length
        d.push(2); // BTRFS_FT_DIR
        d.extend_from_slice(b"default");
        (key(ROOT_TREE_DIR, DIR_ITEM, DEFAULT_HASH), d)
    }

    /// A subvolume's tree items for a root directory holding one small file, `hello`, so that
    /// lambutter, which the fuzz target also walks, finds something to read.
    fn root_dir_with_a_file() -> Vec<(Key, Vec<u8>)> {
        const INODE_ITEM: u8 = 1;
        const DIR_INDEX: u8 = 96;
        const EXTENT_DATA: u8 = 108;
        // btrfs_name_hash("hello").
        const HELLO_HASH: u64 = 1_570_712_351;
        let inode = |mode: u32, size: u64, nlink: u32| {
            let mut d = vec![0u8; 160];
            d[16..24].copy_from_slice(&size.to_le_bytes());
            d[40..44].copy_from_slice(&nlink.to_le_bytes());
            d[52..56].copy_from_slice(&mode.to_le_bytes());
            d
        };
        let mut entry = 257u64.to_le_bytes().to_vec();
        entry.push(INODE_ITEM);
        entry.extend_from_slice(&0u64.to_le_bytes()); // location offset
        entry.extend_from_slice(&0u64.to_le_bytes()); // transid
        entry.extend_from_slice(&0u16.to_le_bytes()); // data length
        entry.extend_from_slice(&5u16.to_le_bytes()); // name length
        entry.push(1); // BTRFS_FT_REG_FILE
        entry.extend_from_slice(b"hello");
        let mut index_ref = 2u64.to_le_bytes().to_vec();
        index_ref.extend_from_slice(&5u16.to_le_bytes());
        index_ref.extend_from_slice(b"hello");
        // An inline extent: generation, ram bytes, compression, encryption, other encoding,
        // type (0, inline), then the bytes.
        let mut extent = 0u64.to_le_bytes().to_vec();
        extent.extend_from_slice(&3u64.to_le_bytes());
        extent.extend_from_slice(&[0, 0, 0, 0, 0]);
        extent.extend_from_slice(b"hi\n");
        vec![
            (key(256, INODE_ITEM, 0), inode(0o40755, 10, 1)),
            (key(256, INODE_REF, 256), inode_ref(b"..")),
            (key(256, DIR_ITEM, HELLO_HASH), entry.clone()),
            (key(256, DIR_INDEX, 2), entry),
            (key(257, INODE_ITEM, 0), inode(0o100644, 3, 1)),
            (key(257, INODE_REF, 256), index_ref),
            (key(257, EXTENT_DATA, 0), extent),
        ]
    }

    fn listed(id: u64, path: &str, parent_id: u64, default: bool, ro: bool) -> BtrfsSubvolume {
        BtrfsSubvolume {
            id,
            path: path.into(),
            parent_id,
            is_default: default,
            read_only: ro,
        }
    }

    /// The fuzz target's seeds: a name, a compact image, what `list` finds in it, and whether
    /// its default subvolume holds `root_dir_with_a_file`.
    fn fuzz_seeds() -> Vec<(&'static str, MemSource, Vec<BtrfsSubvolume>, bool)> {
        let mut seeds = Vec::new();

        // The usual flat layout: `@` the default by the `default` entry, a read-only snapshot.
        let mut img = Image::compact(4096);
        let top = img.tree(vec![]);
        let at = img.tree(root_dir_with_a_file());
        let mut items = vec![
            (key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top)),
            default_entry_item(256),
        ];
        items.extend(subvolume(256, TOP_LEVEL, 256, b"@", at));
        items.extend(subvolume(257, TOP_LEVEL, 256, b"@home", top));
        let [(k, item), backref] = subvolume(258, TOP_LEVEL, 256, b"@snapshot", top);
        items.extend([(k, read_only(item)), backref]);
        let root = img.tree(items);
        let expected = vec![
            listed(256, "@", 5, true, false),
            listed(257, "@home", 5, false, false),
            listed(258, "@snapshot", 5, false, true),
        ];
        seeds.push(("flat", img.finish(root, 0), expected, true));

        // Subvolumes in directories of the top level and of other subvolumes, nested two
        // deep; the default from the superblock's `root_dir_objectid`, as lambutter takes it.
        let mut img = Image::compact(4096);
        let top = img.tree(vec![(key(300, INODE_REF, 256), inode_ref(b"snapshots"))]);
        let at = img.tree(vec![
            (key(301, INODE_REF, 256), inode_ref(b"var")),
            (key(302, INODE_REF, 301), inode_ref(b"lib")),
        ]);
        let empty = img.tree(vec![]);
        let files = img.tree(root_dir_with_a_file());
        let mut items = vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))];
        items.extend(subvolume(256, TOP_LEVEL, 256, b"@", at));
        items.extend(subvolume(257, 256, 302, b"machines", files));
        let [(k, item), backref] = subvolume(258, TOP_LEVEL, 300, b"1", empty);
        items.extend([(k, read_only(item)), backref]);
        items.extend(subvolume(259, 257, 256, b"inner", empty));
        let root = img.tree(items);
        let mut nested = img.finish(root, 0);
        let dir_objectid = SUPER_OFFSET as usize + 0x80;
        nested.0[dir_objectid..dir_objectid + 8].copy_from_slice(&257u64.to_le_bytes());
        let expected = vec![
            listed(256, "@", 5, false, false),
            listed(257, "@/var/lib/machines", 256, true, false),
            listed(258, "snapshots/1", 5, false, true),
            listed(259, "@/var/lib/machines/inner", 257, false, false),
        ];
        seeds.push(("nested", nested, expected, true));

        // A root tree of two leaves under a node.
        let mut img = Image::compact(4096);
        let top = img.tree(vec![]);
        let mut items = vec![
            (key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top)),
            default_entry_item(270),
        ];
        let mut expected = Vec::new();
        for id in 256..280 {
            let name = format!("s{id}");
            let ro = id % 5 == 0;
            let [(k, item), backref] = subvolume(id, TOP_LEVEL, 256, name.as_bytes(), top);
            let item = if ro { read_only(item) } else { item };
            items.extend([(k, item), backref]);
            expected.push(listed(id, &name, 5, id == 270, ro));
        }
        let root = img.tree(items);
        assert_eq!(root.1, 1, "the root tree should be two levels deep");
        seeds.push(("two-leaves", img.finish(root, 0), expected, false));
        seeds
    }

    fn seed_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/btrfs")
    }

    /// Pads a seed back as the `btrfs` fuzz target does and writes the CRC32Cs lambutter
    /// verifies: the superblock's and each node's (the seeds' nodes follow the superblock).
    fn fuzz_image(seed: &[u8]) -> MemSource {
        const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let checksum = |block: &mut [u8]| {
            let sum = CRC32C.checksum(&block[32..]);
            block[..4].copy_from_slice(&sum.to_le_bytes());
        };
        let mut image = vec![0u8; SUPER_OFFSET as usize];
        image.extend_from_slice(seed);
        let (superblock, nodes) = image[SUPER_OFFSET as usize..].split_at_mut(4096);
        checksum(superblock);
        nodes.chunks_mut(4096).for_each(checksum);
        MemSource(image)
    }

    /// The checked-in seeds of the `btrfs` fuzz target are `fuzz_seeds`' images from the
    /// superblock on, list as expected once padded back as the target pads them, and (those
    /// with a file) open and read with lambutter. After changing the seeds, write them again
    /// with `cargo test -p guestkit-fs btrfs_subvol::tests::write_fuzz_seeds -- --ignored`.
    #[test]
    fn fuzz_seeds_are_current() {
        for (name, img, expected, has_file) in fuzz_seeds() {
            assert_eq!(list(&img).unwrap(), expected, "{name}");
            let seed = &img.0[SUPER_OFFSET as usize..];
            assert!(seed.len() <= 32 << 10, "{name}: {} bytes", seed.len());
            let file = std::fs::read(seed_dir().join(name))
                .unwrap_or_else(|e| panic!("seeds/btrfs/{name}: {e}"));
            assert!(
                file == seed,
                "seeds/btrfs/{name} is stale: write it again (see this test's comment)"
            );
            let mut padded = vec![0u8; SUPER_OFFSET as usize];
            padded.extend_from_slice(&file);
            let listed = crate::list_btrfs_subvolumes(&MemSource(padded));
            assert_eq!(listed.unwrap(), expected, "{name}");
            let fs = crate::open(std::sync::Arc::new(fuzz_image(&file)))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if has_file {
                assert_eq!(fs.read_file("/hello", 0, 100).unwrap(), b"hi\n", "{name}");
            }
        }
    }

    /// Found by the fuzz target: lambutter 0.5 reads a system chunk array as long as the
    /// superblock claims, past its 2048 bytes, and panics; `open` turns such a superblock away
    /// first, as the lister does.
    #[test]
    fn a_system_chunk_array_past_2048_bytes_is_corrupt() {
        let (_, img, _, _) = fuzz_seeds().swap_remove(0);
        let mut seed = img.0[SUPER_OFFSET as usize..].to_vec();
        seed[0xa0..0xa4].copy_from_slice(&0x50061u32.to_le_bytes());
        let image = fuzz_image(&seed);
        assert!(is_corrupt(&list(&image), "system chunk array"));
        let r = crate::open(std::sync::Arc::new(image)).map(|_| ());
        assert!(
            matches!(&r, Err(Error::Corrupt { detail, .. }) if detail.contains("system chunk array")),
            "{r:?}"
        );
    }

    /// Writes the `btrfs` fuzz target's seeds (see `fuzz_seeds_are_current`).
    #[test]
    #[ignore = "writes the fuzz seeds into the source tree"]
    fn write_fuzz_seeds() {
        std::fs::create_dir_all(seed_dir()).unwrap();
        for (name, img, _, _) in fuzz_seeds() {
            std::fs::write(seed_dir().join(name), &img.0[SUPER_OFFSET as usize..]).unwrap();
        }
    }

    fn is_corrupt(r: &Result<Vec<BtrfsSubvolume>>, detail: &str) -> bool {
        matches!(r, Err(Error::Corrupt { detail: d, .. }) if d.contains(detail))
    }

    /// Runs `list` on another thread; fails the test if it takes longer than `secs`.
    fn list_within(img: MemSource, secs: u64) -> Result<Vec<BtrfsSubvolume>> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(list(&img));
        });
        rx.recv_timeout(Duration::from_secs(secs))
            .expect("the listing did not finish in time")
    }

    #[test]
    fn nested_subvolume_in_a_directory() {
        let mut img = Image::new(4096);
        let top = img.tree(vec![(key(300, INODE_REF, 256), inode_ref(b"d"))]);
        let empty = img.tree(vec![]);
        let mut items = vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))];
        items.extend(subvolume(256, TOP_LEVEL, 256, b"@", empty));
        items.extend(subvolume(257, TOP_LEVEL, 300, b"nested", empty));
        items.extend(subvolume(258, 257, 256, b"inner", empty));
        let root = img.tree(items);
        let list = list(&img.finish(root, 0)).unwrap();
        let paths: Vec<_> = list
            .iter()
            .map(|s| (s.id, s.path.as_str(), s.parent_id))
            .collect();
        assert_eq!(
            paths,
            [
                (256, "@", 5),
                (257, "d/nested", 5),
                (258, "d/nested/inner", 257)
            ]
        );
    }

    #[test]
    fn a_node_reached_twice_is_corrupt() {
        let mut img = Image::new(4096);
        let top = img.tree(vec![]);
        let leaf = img.leaf(&[(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))]);
        let fan: Vec<_> = (0..100).map(|i| (key(i, 0, 0), leaf)).collect();
        let root = img.node(1, &fan);
        assert!(is_corrupt(
            &list(&img.finish((root, 1), 0)),
            "reached twice"
        ));
    }

    #[test]
    fn overlapping_leaf_items_are_corrupt() {
        let mut img = Image::new(4096);
        let top = img.tree(vec![]);
        // A root item, and a backref whose data lies inside the root item's.
        let end = (4096 - HEADER_LEN) as u32;
        let leaf = img.raw_leaf(&[
            (key(TOP_LEVEL, ROOT_ITEM, 0), end - 239, 239),
            (key(256, ROOT_BACKREF, TOP_LEVEL), end - 200, 19),
        ]);
        let at = leaf as usize + HEADER_LEN + (end - 239) as usize;
        img.bytes[at..at + 239].copy_from_slice(&root_item(top));
        assert!(is_corrupt(&list(&img.finish((leaf, 0), 0)), "overlaps"));
    }

    #[test]
    fn leaf_keys_out_of_order_and_data_over_headers_are_corrupt() {
        let end = (4096 - HEADER_LEN) as u32;
        let mut img = Image::new(4096);
        let leaf = img.raw_leaf(&[
            (key(257, ROOT_ITEM, 0), end - 10, 10),
            (key(256, ROOT_ITEM, 0), end - 20, 10),
        ]);
        assert!(is_corrupt(&list(&img.finish((leaf, 0), 0)), "out of order"));
        let mut img = Image::new(4096);
        let leaf = img.raw_leaf(&[(key(256, ROOT_ITEM, 0), 0, 10)]);
        assert!(is_corrupt(&list(&img.finish((leaf, 0), 0)), "outside"));
    }

    #[test]
    fn looping_and_orphan_backref_chains_finish_fast() {
        let mut img = Image::new(65536);
        let top = img.tree(vec![]);
        let mut items = vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))];
        // 256 -> 257 -> ... -> 3255 -> 256, and 4000 -> ... -> 6000 -> a parent with no root.
        for id in 256..3256 {
            let parent = if id == 3255 { 256 } else { id + 1 };
            items.extend(subvolume(id, parent, 256, b"l", top));
        }
        for id in 4000..=6000 {
            items.extend(subvolume(id, id + 1, 256, b"o", top));
        }
        items.extend(subvolume(9000, TOP_LEVEL, 256, b"real", top));
        let root = img.tree(items);
        let list = list_within(img.finish(root, 0), 30).unwrap();
        let ids: Vec<_> = list.iter().map(|s| (s.id, s.path.as_str())).collect();
        assert_eq!(ids, [(9000, "real")]);
    }

    #[test]
    fn thousands_of_nested_subvolumes_list_within_the_node_limit() {
        let mut img = Image::new(65536);
        let top = img.tree(vec![(key(300, INODE_REF, 256), inode_ref(b"snapshots"))]);
        let mut items = vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))];
        for id in 256..8256 {
            items.extend(subvolume(
                id,
                TOP_LEVEL,
                300,
                id.to_string().as_bytes(),
                top,
            ));
        }
        let root = img.tree(items);
        let list = list(&img.finish(root, 0)).unwrap();
        assert_eq!(list.len(), 8000);
        assert_eq!(list[0].path, "snapshots/256");
    }

    #[test]
    fn a_directory_loop_is_corrupt() {
        let mut img = Image::new(4096);
        let top = img.tree(vec![
            (key(300, INODE_REF, 301), inode_ref(b"a")),
            (key(301, INODE_REF, 300), inode_ref(b"b")),
        ]);
        let mut items = vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))];
        items.extend(subvolume(256, TOP_LEVEL, 300, b"s", top));
        let root = img.tree(items);
        assert!(is_corrupt(&list(&img.finish(root, 0)), "directory loop"));
    }

    #[test]
    fn a_chunk_mapped_past_2_64_is_corrupt() {
        let mut img = Image::new(4096);
        let top = img.tree(vec![]);
        let root = img.tree(vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))]);
        let r = list(&img.finish(root, u64::MAX - 4096));
        assert!(is_corrupt(&r, "past the end"), "{r:?}");
    }

    #[test]
    fn bad_names_are_corrupt_and_non_utf8_unsupported() {
        let listing = |name: &[u8]| {
            let mut img = Image::new(4096);
            let top = img.tree(vec![]);
            let mut items = vec![(key(TOP_LEVEL, ROOT_ITEM, 0), root_item(top))];
            items.extend(subvolume(256, TOP_LEVEL, 256, name, top));
            let root = img.tree(items);
            list(&img.finish(root, 0))
        };
        let long = [b'x'; NAME_LEN + 1];
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &long] {
            let r = listing(bad);
            assert!(is_corrupt(&r, "bad name"), "{bad:?}: {r:?}");
        }
        assert!(matches!(listing(b"\xff"), Err(Error::Unsupported(_))));
        let longest = [b'x'; NAME_LEN];
        assert_eq!(listing(&longest).unwrap()[0].path.len(), NAME_LEN);
    }
}
