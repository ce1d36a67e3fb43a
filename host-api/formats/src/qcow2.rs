//! qcow2 v2 (compat=0.10) and v3 (compat=1.1): zero clusters, zlib and zstd compressed clusters,
//! extended L2 entries (subclusters), backing files and external data files (confined like backing
//! files). Encryption is refused with [`Error::Unsupported`]; internal snapshots are ignored (the
//! active layer is read).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use flate2::{Decompress, FlushDecompress};
use guestkit_block::{BlockSource, Error, FileSource, Result, check_range};

use crate::cache::{LastDecoded, TableCache};
use crate::chain::Chain;
use crate::util::{be32, be64, check_virtual_size, read_container, read_lower, read_table};
use crate::{Compression, Format, ImageInfo};

const WHAT: &str = "qcow2 image";
/// Offset bits of L1 and standard L2 entries.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const COPIED: u64 = 1 << 63;
const ZERO_FLAG: u64 = 1;
/// qemu's own ceiling on the L1 table (QCOW_MAX_L1_SIZE).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Bytes of L2 tables kept in the cache.
const L2_CACHE_BYTES: u64 = 32 << 20;
/// Largest zstd window accepted (qemu's default level uses 2 MiB at most).
const MAX_ZSTD_WINDOW: u64 = 32 << 20;
/// qemu refuses backing file names longer than this.
const MAX_BACKING_NAME: u32 = 1023;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_DATA_FILE: u32 = 0x4441_5441;
const EXT_CRYPTO: u32 = 0x0537_be77;

/// How one piece of the guest disk is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Reads as zeros.
    Zero,
    /// Comes from the backing file (zeros without one).
    Lower,
    /// Stored uncompressed at this host offset (of the piece's first byte).
    Data(u64),
    /// Stored compressed; the raw L2 descriptor.
    Compressed(u64),
}

/// An open qcow2 image.
pub struct Qcow2 {
    file: Arc<dyn BlockSource>,
    /// Where uncompressed clusters live: the image itself or its external data file.
    data: Arc<dyn BlockSource>,
    external_data: bool,
    backing: Option<Arc<dyn BlockSource>>,
    size: u64,
    cluster_bits: u32,
    /// log2 of L2 entries per table.
    l2_bits: u32,
    extended: bool,
    compression: Compression,
    l1: Vec<u64>,
    l2_cache: TableCache<Vec<u64>>,
    /// The last decompressed cluster, keyed by its descriptor: small sequential reads of a
    /// compressed cluster decompress it once.
    last_compressed: LastDecoded<u64>,
}

impl Qcow2 {
    /// Parses the header of `file`, loads the L1 table and opens the backing chain.
    pub fn open(
        file: Arc<dyn BlockSource>,
        path: Option<&Path>,
        chain: &mut Chain,
        info: &mut ImageInfo,
    ) -> Result<Self> {
        let mut hdr = [0u8; 112];
        let n = file.size().min(hdr.len() as u64) as usize;
        if n < 72 {
            return Err(Error::corrupt(WHAT, "file shorter than the qcow2 header"));
        }
        read_container(&*file, 0, &mut hdr[..n], WHAT)?;
        if &hdr[..4] != b"QFI\xfb" {
            return Err(Error::corrupt(WHAT, "bad magic"));
        }
        let version = be32(&hdr, 4);
        if version != 2 && version != 3 {
            return Err(Error::Unsupported(format!("qcow2 version {version}")));
        }
        let backing_offset = be64(&hdr, 8);
        let backing_len = be32(&hdr, 16);
        let cluster_bits = be32(&hdr, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Error::corrupt(
                WHAT,
                format!("cluster_bits {cluster_bits} not in 9..=21"),
            ));
        }
        let cluster_size = 1u64 << cluster_bits;
        let size = check_virtual_size(be64(&hdr, 24), WHAT)?;
        if be32(&hdr, 32) != 0 {
            return Err(Error::Unsupported("encrypted qcow2 image".into()));
        }
        let l1_size = u64::from(be32(&hdr, 36));
        let l1_offset = be64(&hdr, 40);

        let mut extended = false;
        let mut has_data_file = false;
        let mut compression = Compression::Deflate;
        let mut ext_start = 72u64;
        if version == 3 {
            if n < 104 {
                return Err(Error::corrupt(WHAT, "file shorter than the v3 header"));
            }
            let incompat = be64(&hdr, 72);
            let header_len = be32(&hdr, 100);
            if header_len < 104 || u64::from(header_len) > cluster_size {
                return Err(Error::corrupt(WHAT, format!("header_length {header_len}")));
            }
            ext_start = u64::from(header_len);
            let known = INCOMPAT_DIRTY
                | INCOMPAT_CORRUPT
                | INCOMPAT_DATA_FILE
                | INCOMPAT_COMPRESSION
                | INCOMPAT_EXTL2;
            if incompat & !known != 0 {
                return Err(Error::Unsupported(format!(
                    "qcow2 incompatible features {:#x}",
                    incompat & !known
                )));
            }
            has_data_file = incompat & INCOMPAT_DATA_FILE != 0;
            if incompat & INCOMPAT_COMPRESSION != 0 {
                if header_len < 105 || n < 105 {
                    return Err(Error::corrupt(
                        WHAT,
                        "compression type bit without the field",
                    ));
                }
                compression = match hdr[104] {
                    0 => Compression::Deflate,
                    1 => Compression::Zstd,
                    t => return Err(Error::Unsupported(format!("qcow2 compression type {t}"))),
                };
            }
            if incompat & INCOMPAT_EXTL2 != 0 {
                // qemu requires 32 subclusters of at least 512 bytes.
                if cluster_bits < 14 {
                    return Err(Error::corrupt(
                        WHAT,
                        "extended L2 with clusters under 16 KiB",
                    ));
                }
                extended = true;
            }
        }

        let entry_bytes_log2 = if extended { 4 } else { 3 };
        let l2_bits = cluster_bits - entry_bytes_log2;
        let span_bits = cluster_bits + l2_bits;
        let needed_l1 = size.div_ceil(1u64 << span_bits);
        if l1_size < needed_l1 {
            return Err(Error::corrupt(
                WHAT,
                format!("L1 table of {l1_size} entries too small for {size} bytes"),
            ));
        }
        if l1_size * 8 > MAX_L1_BYTES {
            return Err(Error::Limit(format!("qcow2 L1 table of {l1_size} entries")));
        }
        // Only the entries covering the virtual disk matter.
        let l1_bytes = read_table(&*file, l1_offset, needed_l1 * 8, "qcow2 L1 table")?;
        let l1: Vec<u64> = l1_bytes.chunks_exact(8).map(|c| be64(c, 0)).collect();

        // Header extensions live between the header and the end of the first cluster.
        let mut backing_format = None;
        let mut data_file_name = None;
        let first_cluster_end = cluster_size.min(file.size());
        let mut off = ext_start;
        while off + 8 <= first_cluster_end {
            let mut eh = [0u8; 8];
            read_container(&*file, off, &mut eh, WHAT)?;
            let (kind, len) = (be32(&eh, 0), u64::from(be32(&eh, 4)));
            if kind == EXT_END {
                break;
            }
            let data = off + 8;
            if data + len > first_cluster_end {
                return Err(Error::corrupt(
                    WHAT,
                    "header extension runs past the first cluster",
                ));
            }
            match kind {
                EXT_BACKING_FORMAT => {
                    let mut name = vec![0u8; len as usize];
                    read_container(&*file, data, &mut name, WHAT)?;
                    let name = String::from_utf8_lossy(&name).into_owned();
                    backing_format = Some(Format::from_qemu_name(&name).ok_or_else(|| {
                        Error::Unsupported(format!("qcow2 backing format {name:?}"))
                    })?);
                }
                EXT_DATA_FILE => {
                    let mut name = vec![0u8; len as usize];
                    read_container(&*file, data, &mut name, WHAT)?;
                    data_file_name = Some(name);
                }
                EXT_CRYPTO => return Err(Error::Unsupported("encrypted qcow2 image".into())),
                _ => {}
            }
            off = data + len.div_ceil(8) * 8;
        }

        let data = if has_data_file {
            let name = data_file_name
                .ok_or_else(|| Error::corrupt(WHAT, "external data file bit without a name"))?;
            let (_, canon, f) = chain.open_named(path, &name, "qcow2 data file")?;
            info.extent_files.push(canon);
            Arc::new(FileSource::from_file(f)?) as Arc<dyn BlockSource>
        } else {
            Arc::clone(&file)
        };

        let mut backing = None;
        if backing_offset != 0 {
            if backing_len == 0 || backing_len > MAX_BACKING_NAME {
                return Err(Error::corrupt(
                    WHAT,
                    format!("backing file name of {backing_len} bytes"),
                ));
            }
            let end = backing_offset.checked_add(u64::from(backing_len));
            if end.is_none_or(|end| end > first_cluster_end) {
                return Err(Error::corrupt(
                    WHAT,
                    "backing file name outside the first cluster",
                ));
            }
            let mut name = vec![0u8; backing_len as usize];
            read_container(&*file, backing_offset, &mut name, WHAT)?;
            backing = Some(chain.open_backing(path, &name, backing_format)?);
        }

        info.virtual_size = size;
        info.cluster_size = Some(cluster_size);
        // Compressed clusters are possible in any image; report the declared method.
        info.compression = vec![compression];
        let cache_tables = (L2_CACHE_BYTES >> cluster_bits).clamp(4, 1024) as usize;
        Ok(Qcow2 {
            file,
            data,
            external_data: has_data_file,
            backing,
            size,
            cluster_bits,
            l2_bits,
            extended,
            compression,
            l1,
            l2_cache: TableCache::new(cache_tables),
            last_compressed: LastDecoded::new(),
        })
    }

    /// The L2 table for L1 index `i`, or `None` when the L1 entry is unallocated.
    fn l2_table(&self, i: usize) -> Result<Option<Arc<Vec<u64>>>> {
        let entry = self.l1.get(i).copied().unwrap_or(0);
        let offset = entry & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        if offset & ((1u64 << self.cluster_bits) - 1) != 0 {
            return Err(Error::corrupt(
                "qcow2 L1 table",
                format!("unaligned L2 offset {offset:#x}"),
            ));
        }
        let table = self.l2_cache.get_or_load(offset, || {
            let mut raw = vec![0u8; 1usize << self.cluster_bits];
            read_container(&*self.file, offset, &mut raw, "qcow2 L2 table")?;
            Ok::<_, Error>(raw.chunks_exact(8).map(|c| be64(c, 0)).collect())
        })?;
        Ok(Some(table))
    }

    /// How guest offset `pos` is stored, and where that storage unit (cluster or subcluster)
    /// ends. `table` is the L2 table covering `pos`.
    fn unit_at(&self, table: Option<&[u64]>, pos: u64) -> Result<(Unit, u64)> {
        let cluster_mask = (1u64 << self.cluster_bits) - 1;
        let cluster_end = (pos | cluster_mask) + 1;
        let Some(table) = table else {
            return Ok((Unit::Lower, cluster_end));
        };
        let index = ((pos >> self.cluster_bits) & ((1u64 << self.l2_bits) - 1)) as usize;
        let in_cluster = pos & cluster_mask;
        if !self.extended {
            let entry = table[index];
            if entry & COMPRESSED != 0 {
                return Ok((Unit::Compressed(entry & (COMPRESSED - 1)), cluster_end));
            }
            let host = entry & OFFSET_MASK;
            let unit = if entry & ZERO_FLAG != 0 {
                Unit::Zero
            } else if self.unallocated(entry) {
                Unit::Lower
            } else {
                self.check_aligned(host)?;
                Unit::Data(host + in_cluster)
            };
            return Ok((unit, cluster_end));
        }
        let (entry, bitmap) = (table[2 * index], table[2 * index + 1]);
        if entry & COMPRESSED != 0 {
            return Ok((Unit::Compressed(entry & (COMPRESSED - 1)), cluster_end));
        }
        let host = entry & OFFSET_MASK;
        let sc_bits = self.cluster_bits - 5;
        let sc = (in_cluster >> sc_bits) as u32;
        let sc_end = ((pos >> sc_bits) + 1) << sc_bits;
        let allocated = bitmap & (1 << sc) != 0;
        let zero = bitmap & (1 << (32 + sc)) != 0;
        let unit = match (allocated, zero) {
            (true, true) => {
                return Err(Error::corrupt(
                    "qcow2 L2 table",
                    "subcluster marked both allocated and zero",
                ));
            }
            (true, false) if self.unallocated(entry) => {
                return Err(Error::corrupt(
                    "qcow2 L2 table",
                    "allocated subcluster in an unallocated cluster",
                ));
            }
            (true, false) => {
                self.check_aligned(host)?;
                Unit::Data(host + in_cluster)
            }
            (false, true) => Unit::Zero,
            (false, false) => Unit::Lower,
        };
        Ok((unit, sc_end))
    }

    /// Whether a (non-compressed) L2 entry points nowhere. Offset 0 is a real offset in an
    /// external data file; there qemu marks allocated clusters with the COPIED flag instead.
    fn unallocated(&self, entry: u64) -> bool {
        entry & OFFSET_MASK == 0 && !(self.external_data && entry & COPIED != 0)
    }

    fn check_aligned(&self, host: u64) -> Result<()> {
        if host & ((1u64 << self.cluster_bits) - 1) != 0 {
            return Err(Error::corrupt(
                "qcow2 L2 table",
                format!("unaligned cluster offset {host:#x}"),
            ));
        }
        Ok(())
    }

    /// Copies bytes `[in_cluster, in_cluster + out.len())` of the compressed cluster `desc`.
    fn read_compressed(&self, desc: u64, in_cluster: usize, out: &mut [u8]) -> Result<()> {
        self.last_compressed
            .copy_out(desc, in_cluster, out, || self.decompress(desc))
    }

    fn decompress(&self, desc: u64) -> Result<Vec<u8>> {
        const WHAT: &str = "qcow2 compressed cluster";
        if self.external_data {
            return Err(Error::corrupt(
                WHAT,
                "compressed cluster with an external data file",
            ));
        }
        let x = 62 - (self.cluster_bits - 8);
        let host = desc & ((1u64 << x) - 1);
        let sectors = ((desc >> x) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
        let mut len = sectors * 512 - (host & 511);
        let file_size = self.file.size();
        if host >= file_size {
            return Err(Error::corrupt(
                WHAT,
                format!("offset {host:#x} past end of file"),
            ));
        }
        // The sector count rounds up, so the last cluster may claim bytes past the end of file.
        len = len.min(file_size - host);
        let mut input = vec![0u8; len as usize];
        read_container(&*self.file, host, &mut input, WHAT)?;
        let mut out = vec![0u8; 1usize << self.cluster_bits];
        match self.compression {
            Compression::Deflate => {
                // qcow2 stores raw deflate (no zlib header); the output must fill the cluster.
                let mut inflater = Decompress::new(false);
                let status = inflater.decompress(&input, &mut out, FlushDecompress::Finish);
                if status.is_err() || inflater.total_out() != out.len() as u64 {
                    return Err(Error::corrupt(
                        WHAT,
                        "deflate data does not inflate to a cluster",
                    ));
                }
            }
            Compression::Zstd => {
                // The decoder reserves the frame's declared window up front; refuse windows no
                // qcow2 writer needs before it gets the chance.
                let window = zstd_window(&input)
                    .ok_or_else(|| Error::corrupt(WHAT, "bad zstd frame header"))?;
                if window > MAX_ZSTD_WINDOW {
                    return Err(Error::Limit(format!("zstd window of {window} bytes")));
                }
                let mut slice = input.as_slice();
                let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut slice)
                    .map_err(|e| Error::corrupt(WHAT, format!("zstd frame header: {e}")))?;
                dec.read_exact(&mut out)
                    .map_err(|e| Error::corrupt(WHAT, format!("zstd data: {e}")))?;
            }
        }
        Ok(out)
    }
}

impl BlockSource for Qcow2 {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let end = offset + buf.len() as u64;
        let span_bits = self.cluster_bits + self.l2_bits;
        let mut pos = offset;
        while pos < end {
            let l1_index = (pos >> span_bits) as usize;
            let table = self.l2_table(l1_index)?;
            let table = table.as_deref().map(Vec::as_slice);
            let span_end = end.min(((pos >> span_bits) + 1) << span_bits);
            while pos < span_end {
                let (unit, unit_end) = self.unit_at(table, pos)?;
                let mut run_end = unit_end.min(span_end);
                // Coalesce following units stored the same way (and, for data, contiguously)
                // so a sequential read is one pread per run instead of one per cluster.
                if !matches!(unit, Unit::Compressed(_)) {
                    while run_end < span_end {
                        let (next, next_end) = self.unit_at(table, run_end)?;
                        let continues = match (unit, next) {
                            (Unit::Data(h), Unit::Data(n)) => n == h + (run_end - pos),
                            (a, b) => a == b,
                        };
                        if !continues {
                            break;
                        }
                        run_end = next_end.min(span_end);
                    }
                }
                let out = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
                match unit {
                    Unit::Zero => out.fill(0),
                    Unit::Lower => read_lower(self.backing.as_deref(), pos, out)?,
                    Unit::Data(host) => {
                        read_container(&*self.data, host, out, "qcow2 data cluster")?
                    }
                    Unit::Compressed(desc) => {
                        let in_cluster = (pos & ((1u64 << self.cluster_bits) - 1)) as usize;
                        self.read_compressed(desc, in_cluster, out)?;
                    }
                }
                pos = run_end;
            }
        }
        Ok(())
    }
}

/// The window size a zstd frame declares (RFC 8878 section 3.1.1.1), or `None` if the frame
/// header is malformed or truncated.
fn zstd_window(frame: &[u8]) -> Option<u64> {
    if frame.get(..4)? != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let descriptor = *frame.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let wd = *frame.get(5)?;
        let base = 1u64 << (10 + u32::from(wd >> 3));
        return Some(base + base / 8 * u64::from(wd & 7));
    }
    // Single segment: the window is the frame content size, after the dictionary id.
    let dict_len = [0usize, 1, 2, 4][usize::from(descriptor & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(descriptor >> 6)];
    let at = 5 + dict_len;
    let field = frame.get(at..at + fcs_len)?;
    let mut bytes = [0u8; 8];
    bytes[..fcs_len].copy_from_slice(field);
    let size = u64::from_le_bytes(bytes);
    Some(if fcs_len == 2 { size + 256 } else { size })
}

#[cfg(test)]
mod tests {
    use super::zstd_window;

    #[test]
    fn zstd_window_sizes() {
        // Window descriptor 0x58: exponent 11, mantissa 0 -> 2 MiB.
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]),
            Some(2 << 20)
        );
        // Single segment, 2-byte content size 0xff00 + 256 = 65536.
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x00, 0xff]),
            Some(65536)
        );
        // Largest exponent: far above the cap, still no overflow.
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xff]),
            Some((1 << 41) + 7 * (1 << 38))
        );
        assert_eq!(zstd_window(&[0x28, 0xb5, 0x2f, 0xfd]), None);
        assert_eq!(zstd_window(b"not zstd"), None);
    }
}
