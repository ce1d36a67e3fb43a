//! VMDK: monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat,
//! streamOptimized (deflate-compressed grains with markers), ZERO extents and delta disks with a
//! parent (`parentFileNameHint`). Extent and parent files are confined like backing files.
//! ESX-only variants (COWD sparse, VMFS raw device maps) are refused with [`Error::Unsupported`].

use std::path::Path;
use std::sync::Arc;

use flate2::{Decompress, FlushDecompress};
use guestkit_block::{BlockSource, Error, FileSource, Result, check_range};

use crate::cache::{LastDecoded, TableCache};
use crate::chain::Chain;
use crate::util::{check_virtual_size, le16, le32, le64, read_container, read_lower, read_table};
use crate::{Compression, ImageInfo};

const WHAT: &str = "vmdk image";
const SECTOR: u64 = 512;
/// Descriptors are a few hundred bytes; anything near this is not a descriptor.
const MAX_DESCRIPTOR: u64 = 1 << 20;
const MAX_EXTENTS: usize = 4096;
/// Largest grain accepted (8 MiB); it bounds the per-read decompression buffer.
const MAX_GRAIN_SECTORS: u64 = 1 << 14;
/// Largest grain table accepted, in entries.
const MAX_GTES: u64 = 1 << 16;
/// Bytes of grain tables kept in the cache per extent.
const GT_CACHE_BYTES: u64 = 8 << 20;
const GD_AT_END: u64 = u64::MAX;
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const COMPRESS_DEFLATE: u16 = 1;
/// Grain table entry meaning "reads as zeros" when the zeroed-grain flag is set.
const GTE_ZEROED: u32 = 1;

/// Whether the first bytes of a file look like a VMDK text descriptor.
pub fn looks_like_descriptor(head: &[u8]) -> bool {
    head.trim_ascii_start()
        .starts_with(b"# Disk DescriptorFile")
}

/// An open VMDK image (all its extents, in order).
pub struct Vmdk {
    size: u64,
    extents: Vec<Extent>,
    parent: Option<Arc<dyn BlockSource>>,
}

struct Extent {
    /// First guest byte this extent covers.
    start: u64,
    len: u64,
    kind: ExtentKind,
}

enum ExtentKind {
    Zero,
    Flat {
        file: Arc<dyn BlockSource>,
        offset: u64,
    },
    Sparse(Box<Sparse>),
}

struct Sparse {
    file: Arc<dyn BlockSource>,
    grain: u64,
    gtes: u64,
    gd: Vec<u32>,
    compressed: bool,
    markers: bool,
    zero_grain: bool,
    gt_cache: TableCache<Vec<u32>>,
    /// The last decompressed grain, keyed by its sector, for small sequential reads.
    last_grain: LastDecoded<u32>,
}

/// How one grain of a sparse extent is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grain {
    Lower,
    Zero,
    /// Uncompressed data at this byte offset (of the grain's start).
    Data(u64),
    /// Compressed grain at this sector.
    Compressed(u32),
}

struct Descriptor {
    extents: Vec<ExtentLine>,
    parent: Option<Vec<u8>>,
}

struct ExtentLine {
    sectors: u64,
    kind: String,
    file: Option<Vec<u8>>,
    offset: u64,
}

impl Vmdk {
    /// Opens a VMDK from its sparse file or its text descriptor.
    pub fn open(
        file: Arc<dyn BlockSource>,
        path: Option<&Path>,
        chain: &mut Chain,
        info: &mut ImageInfo,
    ) -> Result<Self> {
        let mut magic = [0u8; 4];
        read_container(&*file, 0, &mut magic, WHAT)?;
        let mut extents = Vec::new();
        let desc;
        if &magic == b"KDMV" {
            let (sparse, capacity, embedded) = Sparse::open(Arc::clone(&file))?;
            desc = match embedded {
                Some(text) => parse_descriptor(&text)?,
                None => Descriptor {
                    extents: Vec::new(),
                    parent: None,
                },
            };
            note_sparse(&sparse, info);
            extents.push(Extent {
                start: 0,
                len: capacity,
                kind: ExtentKind::Sparse(Box::new(sparse)),
            });
        } else if &magic == b"COWD" {
            return Err(Error::Unsupported("vmdk COWD (ESX) sparse extent".into()));
        } else {
            if file.size() > MAX_DESCRIPTOR {
                return Err(Error::Limit(format!(
                    "vmdk descriptor of {} bytes",
                    file.size()
                )));
            }
            let text = read_table(&*file, 0, file.size(), "vmdk descriptor")?;
            if !looks_like_descriptor(&text) {
                return Err(Error::corrupt(
                    WHAT,
                    "neither a sparse extent nor a descriptor",
                ));
            }
            desc = parse_descriptor(&text)?;
            let mut start = 0u64;
            for line in &desc.extents {
                let len = line
                    .sectors
                    .checked_mul(SECTOR)
                    .ok_or_else(|| Error::corrupt("vmdk descriptor", "extent size overflows"))?;
                let open_file = |name: &Option<Vec<u8>>, info: &mut ImageInfo| {
                    let name = name.as_ref().ok_or_else(|| {
                        Error::corrupt("vmdk descriptor", "extent without a file")
                    })?;
                    let (_, canon, f) = chain.open_named(path, name, "vmdk extent")?;
                    info.extent_files.push(canon);
                    Ok::<Arc<dyn BlockSource>, Error>(Arc::new(FileSource::from_file(f)?))
                };
                let kind = match line.kind.as_str() {
                    "ZERO" => ExtentKind::Zero,
                    "FLAT" | "VMFS" => ExtentKind::Flat {
                        file: open_file(&line.file, info)?,
                        offset: line.offset.checked_mul(SECTOR).ok_or_else(|| {
                            Error::corrupt("vmdk descriptor", "extent offset overflows")
                        })?,
                    },
                    "SPARSE" => {
                        let f = open_file(&line.file, info)?;
                        let mut m = [0u8; 4];
                        read_container(&*f, 0, &mut m, WHAT)?;
                        if &m != b"KDMV" {
                            return Err(Error::Unsupported(
                                "vmdk sparse extent without KDMV".into(),
                            ));
                        }
                        let (sparse, _, _) = Sparse::open(f)?;
                        note_sparse(&sparse, info);
                        ExtentKind::Sparse(Box::new(sparse))
                    }
                    other => {
                        return Err(Error::Unsupported(format!("vmdk extent type {other}")));
                    }
                };
                extents.push(Extent { start, len, kind });
                start = start
                    .checked_add(len)
                    .ok_or_else(|| Error::corrupt("vmdk descriptor", "disk size overflows"))?;
                check_virtual_size(start, WHAT)?;
            }
        }
        let size = extents.last().map_or(0, |e| e.start + e.len);
        let size = check_virtual_size(size, WHAT)?;
        let parent = match &desc.parent {
            Some(name) => Some(chain.open_backing(path, name, None)?),
            None => None,
        };
        info.virtual_size = size;
        Ok(Vmdk {
            size,
            extents,
            parent,
        })
    }
}

fn note_sparse(sparse: &Sparse, info: &mut ImageInfo) {
    info.cluster_size.get_or_insert(sparse.grain);
    if sparse.compressed && !info.compression.contains(&Compression::Deflate) {
        info.compression.push(Compression::Deflate);
    }
}

fn parse_descriptor(text: &[u8]) -> Result<Descriptor> {
    let mut extents = Vec::new();
    let mut parent_cid = None;
    let mut parent_hint = None;
    for line in text.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = line[..eq].trim_ascii();
            let value = unquote(line[eq + 1..].trim_ascii());
            match key {
                b"parentCID" => parent_cid = Some(value.to_vec()),
                b"parentFileNameHint" => parent_hint = Some(value.to_vec()),
                _ => {}
            }
            continue;
        }
        let access = first_word(line);
        if !matches!(access, b"RW" | b"RDONLY" | b"NOACCESS") {
            continue;
        }
        if extents.len() >= MAX_EXTENTS {
            return Err(Error::Limit(format!(
                "vmdk descriptor with over {MAX_EXTENTS} extents"
            )));
        }
        let rest = line[access.len()..].trim_ascii_start();
        let sectors_word = first_word(rest);
        let sectors = parse_u64(sectors_word)?;
        let rest = rest[sectors_word.len()..].trim_ascii_start();
        let kind_word = first_word(rest);
        let kind = String::from_utf8_lossy(kind_word).into_owned();
        let rest = rest[kind_word.len()..].trim_ascii_start();
        let (file, rest) = if let Some(quoted) = rest.strip_prefix(b"\"") {
            let close = quoted
                .iter()
                .position(|&b| b == b'"')
                .ok_or_else(|| Error::corrupt("vmdk descriptor", "unterminated file name"))?;
            (
                Some(quoted[..close].to_vec()),
                quoted[close + 1..].trim_ascii_start(),
            )
        } else {
            (None, rest)
        };
        let offset_word = first_word(rest);
        let offset = if offset_word.is_empty() {
            0
        } else {
            parse_u64(offset_word)?
        };
        extents.push(ExtentLine {
            sectors,
            kind,
            file,
            offset,
        });
    }
    let has_parent = parent_cid.is_some_and(|cid| !cid.eq_ignore_ascii_case(b"ffffffff"));
    Ok(Descriptor {
        extents,
        parent: if has_parent { parent_hint } else { None },
    })
}

fn unquote(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

fn first_word(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[..end]
}

fn parse_u64(word: &[u8]) -> Result<u64> {
    std::str::from_utf8(word)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::corrupt(
                "vmdk descriptor",
                format!("bad number {:?}", String::from_utf8_lossy(word)),
            )
        })
}

impl Sparse {
    /// Parses a hosted sparse extent header; returns the extent, its capacity in bytes and its
    /// embedded descriptor if any.
    fn open(file: Arc<dyn BlockSource>) -> Result<(Self, u64, Option<Vec<u8>>)> {
        let mut hdr = [0u8; 512];
        read_container(&*file, 0, &mut hdr, WHAT)?;
        let desc_offset = le64(&hdr, 28);
        let desc_size = le64(&hdr, 36);
        if le64(&hdr, 56) == GD_AT_END {
            // streamOptimized: the real header is the footer copy, 1 KiB before the end.
            let at = file
                .size()
                .checked_sub(1024)
                .ok_or_else(|| Error::corrupt(WHAT, "no room for a footer"))?;
            read_container(&*file, at, &mut hdr, WHAT)?;
            if &hdr[..4] != b"KDMV" {
                return Err(Error::corrupt(WHAT, "bad footer magic"));
            }
        }
        let version = le32(&hdr, 4);
        if !(1..=3).contains(&version) {
            return Err(Error::Unsupported(format!("vmdk sparse version {version}")));
        }
        let flags = le32(&hdr, 8);
        let capacity = le64(&hdr, 12);
        let grain = le64(&hdr, 20);
        let gtes = u64::from(le32(&hdr, 44));
        let gd_offset = le64(&hdr, 56);
        let algorithm = le16(&hdr, 77);
        if grain == 0 || grain > MAX_GRAIN_SECTORS {
            return Err(Error::corrupt(WHAT, format!("grain of {grain} sectors")));
        }
        if gtes == 0 || gtes > MAX_GTES {
            return Err(Error::corrupt(
                WHAT,
                format!("{gtes} entries per grain table"),
            ));
        }
        let capacity = check_virtual_size(
            capacity
                .checked_mul(SECTOR)
                .ok_or_else(|| Error::corrupt(WHAT, "capacity overflows"))?,
            WHAT,
        )?;
        let compressed = flags & FLAG_COMPRESSED != 0;
        if compressed && algorithm != COMPRESS_DEFLATE {
            return Err(Error::Unsupported(format!(
                "vmdk compression algorithm {algorithm}"
            )));
        }
        let grain = grain * SECTOR;
        let gd_entries = capacity.div_ceil(grain * gtes);
        let gd_start = gd_offset
            .checked_mul(SECTOR)
            .ok_or_else(|| Error::corrupt(WHAT, "grain directory offset overflows"))?;
        let raw = read_table(&*file, gd_start, gd_entries * 4, "vmdk grain directory")?;
        let gd = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        let embedded = if desc_offset != 0 && desc_size != 0 {
            let len = desc_size.saturating_mul(SECTOR);
            if len > MAX_DESCRIPTOR {
                return Err(Error::Limit(format!(
                    "vmdk embedded descriptor of {len} bytes"
                )));
            }
            let at = desc_offset
                .checked_mul(SECTOR)
                .ok_or_else(|| Error::corrupt(WHAT, "descriptor offset overflows"))?;
            let mut text = read_table(&*file, at, len, "vmdk descriptor")?;
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            text.truncate(end);
            Some(text)
        } else {
            None
        };
        let cache = (GT_CACHE_BYTES / (gtes * 4)).clamp(4, 1024) as usize;
        let sparse = Sparse {
            file,
            grain,
            gtes,
            gd,
            compressed,
            markers: flags & FLAG_MARKERS != 0,
            zero_grain: flags & FLAG_ZERO_GRAIN != 0,
            gt_cache: TableCache::new(cache),
            last_grain: LastDecoded::new(),
        };
        Ok((sparse, capacity, embedded))
    }

    /// How the grain holding extent offset `pos` is stored.
    fn grain_at(&self, pos: u64) -> Result<Grain> {
        let grain_index = pos / self.grain;
        let gt_index = (grain_index / self.gtes) as usize;
        let gd_entry = self.gd.get(gt_index).copied().unwrap_or(0);
        if gd_entry == 0 {
            return Ok(Grain::Lower);
        }
        let gt = self.gt_cache.get_or_load(u64::from(gd_entry), || {
            let mut raw = vec![0u8; (self.gtes * 4) as usize];
            read_container(
                &*self.file,
                u64::from(gd_entry) * SECTOR,
                &mut raw,
                "vmdk grain table",
            )?;
            Ok::<_, Error>(raw.chunks_exact(4).map(|c| le32(c, 0)).collect())
        })?;
        let gte = gt[(grain_index % self.gtes) as usize];
        Ok(match gte {
            0 => Grain::Lower,
            GTE_ZEROED if self.zero_grain => Grain::Zero,
            s if self.compressed => Grain::Compressed(s),
            s => Grain::Data(u64::from(s) * SECTOR),
        })
    }

    fn read(
        &self,
        lower: Option<&dyn BlockSource>,
        base: u64,
        pos: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let end = pos + buf.len() as u64;
        let mut at = pos;
        while at < end {
            let grain = self.grain_at(at)?;
            let in_grain = at % self.grain;
            let mut run_end = end.min(at - in_grain + self.grain);
            if !matches!(grain, Grain::Compressed(_)) {
                while run_end < end {
                    let next = self.grain_at(run_end)?;
                    let continues = match (grain, next) {
                        (Grain::Data(h), Grain::Data(n)) => n == h + in_grain + (run_end - at),
                        (a, b) => a == b,
                    };
                    if !continues {
                        break;
                    }
                    run_end = end.min(run_end + self.grain);
                }
            }
            let out = &mut buf[(at - pos) as usize..(run_end - pos) as usize];
            match grain {
                Grain::Lower => read_lower(lower, base + at, out)?,
                Grain::Zero => out.fill(0),
                Grain::Data(h) => read_container(&*self.file, h + in_grain, out, "vmdk grain")?,
                Grain::Compressed(sector) => {
                    self.read_compressed(sector, in_grain as usize, out)?
                }
            }
            at = run_end;
        }
        Ok(())
    }

    fn read_compressed(&self, sector: u32, in_grain: usize, out: &mut [u8]) -> Result<()> {
        self.last_grain
            .copy_out(sector, in_grain, out, || self.inflate(sector))
    }

    fn inflate(&self, sector: u32) -> Result<Vec<u8>> {
        const WHAT: &str = "vmdk compressed grain";
        let mut at = u64::from(sector) * SECTOR;
        // Compressed data never exceeds twice the grain (qemu's own bound).
        let max = 2 * self.grain;
        let len = if self.markers {
            let mut marker = [0u8; 12];
            read_container(&*self.file, at, &mut marker, WHAT)?;
            at += 12;
            u64::from(le32(&marker, 8))
        } else {
            max.min(self.file.size().saturating_sub(at))
        };
        // Check against the file before allocating, so a lying marker costs nothing.
        let fits = at
            .checked_add(len)
            .is_some_and(|end| end <= self.file.size());
        if len == 0 || len > max || !fits {
            return Err(Error::corrupt(
                WHAT,
                format!("compressed size {len} at {at}"),
            ));
        }
        let mut input = vec![0u8; len as usize];
        read_container(&*self.file, at, &mut input, WHAT)?;
        let mut out = vec![0u8; self.grain as usize];
        // VMDK grains are zlib streams; a short grain (end of disk) leaves zeros behind it.
        let mut inflater = Decompress::new(true);
        match inflater.decompress(&input, &mut out, FlushDecompress::Finish) {
            Ok(_) => Ok(out),
            Err(e) => Err(Error::corrupt(WHAT, format!("inflate: {e}"))),
        }
    }
}

impl BlockSource for Vmdk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        let mut index = self.extents.partition_point(|e| e.start + e.len <= pos);
        while pos < end {
            let extent = self
                .extents
                .get(index)
                .ok_or_else(|| Error::corrupt(WHAT, "read outside every extent"))?;
            let run_end = end.min(extent.start + extent.len);
            let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            let within = pos - extent.start;
            match &extent.kind {
                ExtentKind::Zero => out.fill(0),
                ExtentKind::Flat { file, offset } => read_container(
                    &**file,
                    offset.saturating_add(within),
                    out,
                    "vmdk flat extent",
                )?,
                ExtentKind::Sparse(sparse) => {
                    sparse.read(self.parent.as_deref(), extent.start, within, out)?
                }
            }
            pos = run_end;
            index += 1;
        }
        Ok(())
    }
}
