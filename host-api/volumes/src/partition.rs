//! MBR and GPT partition tables.
//!
//! Hand-written rather than built on a crate such as `bootsector`: we need the GPT backup-header
//! fallback with the reason the primary was rejected, per-entry skip reasons for crafted tables,
//! a bounded EBR walk with loop detection and 4096-byte sector detection, and the whole thing is a
//! few hundred lines of fixed-layout parsing.

use crate::guid::Guid;
use guestkit_block::{BlockSource, Error, Result, Window};
use std::collections::HashSet;

/// Most logical partitions followed in one extended partition's EBR chain.
pub const MAX_LOGICAL_PARTITIONS: usize = 256;
/// Largest GPT partition entry array read (bytes); the usual one is 16 KiB.
pub const MAX_GPT_ENTRY_ARRAY: u64 = 1 << 20;

/// Which kind of table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// DOS/MBR table, possibly with an extended partition holding logical ones.
    Mbr,
    /// GUID partition table (behind a protective MBR).
    Gpt,
}

/// A partition's type: the MBR system byte or the GPT type GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionType {
    /// MBR partition type byte (e.g. 0x83 Linux).
    Mbr(u8),
    /// GPT partition type GUID.
    Gpt(Guid),
}

impl PartitionType {
    /// A human name for common types, `None` for the others.
    pub fn friendly_name(&self) -> Option<&'static str> {
        match *self {
            PartitionType::Mbr(b) => match b {
                0x83 => Some("Linux data"),
                0x82 => Some("Linux swap"),
                0x8e => Some("Linux LVM"),
                0xfd => Some("Linux RAID"),
                0x05 | 0x0f | 0x85 => Some("Extended"),
                0x07 => Some("Microsoft basic data (NTFS/exFAT)"),
                0x0b | 0x0c => Some("FAT32"),
                0x04 | 0x06 | 0x0e => Some("FAT16"),
                0x01 => Some("FAT12"),
                0xef => Some("EFI system"),
                0xee => Some("GPT protective"),
                0x27 => Some("Windows recovery"),
                _ => None,
            },
            PartitionType::Gpt(g) => GPT_TYPES
                .iter()
                .find(|(text, _)| Guid::parse(text) == Some(g))
                .map(|(_, name)| *name),
        }
    }

    /// True for the MBR extended-partition container types.
    pub fn is_extended(&self) -> bool {
        matches!(self, PartitionType::Mbr(0x05 | 0x0f | 0x85))
    }
}

const GPT_TYPES: &[(&str, &str)] = &[
    ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux data"),
    ("E6D6D379-F760-4E58-8A8D-6A1F26CC7EC1", "Linux LVM"),
    ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI system"),
    ("21686148-6449-6E6F-744E-656564454649", "BIOS boot"),
    (
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "Microsoft basic data",
    ),
    ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
    ("E3C9E316-0B5C-4DB8-817D-F92DF00215AE", "Microsoft reserved"),
    ("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", "Windows recovery"),
    (
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "Linux root (x86-64)",
    ),
    ("933AC7E1-2EB4-4F13-B844-0E14E2AEF915", "Linux home"),
    (
        "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        "Linux extended boot",
    ),
    ("A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
];

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Partition number as Linux names it: MBR 1-4 primary, 5.. logical; GPT entry index + 1.
    pub number: u32,
    /// First byte on the disk.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// MBR type byte or GPT type GUID.
    pub partition_type: PartitionType,
    /// GPT partition name (UTF-16 decoded); `None` on MBR.
    pub name: Option<String>,
    /// GPT unique partition GUID; `None` on MBR.
    pub partition_guid: Option<Guid>,
    /// MBR active flag, or GPT attribute bit 2 (legacy BIOS bootable).
    pub bootable: bool,
}

impl Partition {
    /// A read-only view of this partition's bytes on `disk`.
    pub fn open<S: BlockSource>(&self, disk: S) -> Result<Window<S>> {
        Window::new(disk, self.start_bytes, self.size_bytes)
    }
}

/// A table entry that was present but not usable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The number the partition would have had.
    pub number: u32,
    /// Why it was skipped.
    pub reason: String,
}

/// A parsed partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// MBR or GPT.
    pub kind: TableKind,
    /// GPT disk GUID; `None` on MBR.
    pub disk_guid: Option<Guid>,
    /// MBR disk signature (bytes 440..444); `None` on GPT.
    pub mbr_signature: Option<u32>,
    /// Logical sector size the table was found with (512 or 4096).
    pub sector_size: u32,
    /// Usable partitions, in table order.
    pub partitions: Vec<Partition>,
    /// Entries that were present but rejected (outside the disk, overlapping, ...).
    pub skipped: Vec<SkippedEntry>,
    /// Problems that were worked around, e.g. a corrupt primary GPT header.
    pub warnings: Vec<String>,
}

impl PartitionTable {
    /// The partition with Linux number `number`.
    pub fn get(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

/// Reads the partition table of `disk`. `Ok(None)` when there is none (no 0x55AA signature, or
/// a boot sector whose entries are not a partition table).
pub fn read_partition_table<S: BlockSource + ?Sized>(disk: &S) -> Result<Option<PartitionTable>> {
    if disk.size() < 512 {
        return Ok(None);
    }
    let mut mbr = [0u8; 512];
    disk.read_at(0, &mut mbr)?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(None);
    }
    let entries = mbr_entries(&mbr);
    // A filesystem boot sector (FAT, NTFS) also ends in 0x55AA; its "entries" then have
    // boot flags other than 0x00/0x80.
    if entries.iter().any(|e| e.status & 0x7f != 0) {
        return Ok(None);
    }
    if entries.iter().any(|e| e.kind == 0xee) {
        return read_gpt(disk).map(Some);
    }
    read_mbr(disk, &mbr, &entries).map(Some)
}

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    status: u8,
    kind: u8,
    start: u64,
    sectors: u64,
}

fn mbr_entries(sector: &[u8; 512]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        MbrEntry {
            status: e[0],
            kind: e[4],
            start: u64::from(le32(e, 8)),
            sectors: u64::from(le32(e, 12)),
        }
    })
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Collects accepted partitions and rejected entries, rejecting overlaps and out-of-disk ranges.
struct Collector {
    disk_size: u64,
    partitions: Vec<Partition>,
    skipped: Vec<SkippedEntry>,
}

impl Collector {
    fn skip(&mut self, number: u32, reason: impl Into<String>) {
        self.skipped.push(SkippedEntry {
            number,
            reason: reason.into(),
        });
    }

    /// Checks `p` against the disk and the partitions accepted so far. Logical partitions live
    /// inside their extended container, so containers are not compared with them.
    fn accept(&mut self, p: Partition, inside_container: bool) -> bool {
        let Some(end) = p.start_bytes.checked_add(p.size_bytes) else {
            self.skip(p.number, "start + size overflows");
            return false;
        };
        if p.size_bytes == 0 {
            self.skip(p.number, "zero length");
            return false;
        }
        if end > self.disk_size {
            let reason = format!(
                "bytes {}..{end} reach past the end of the {}-byte disk",
                p.start_bytes, self.disk_size
            );
            self.skip(p.number, reason);
            return false;
        }
        let clash = self.partitions.iter().find(|q| {
            let q_container = q.partition_type.is_extended();
            let exempt = (inside_container && q_container)
                || (p.partition_type.is_extended() && q.number > 4);
            !exempt && p.start_bytes < q.start_bytes + q.size_bytes && q.start_bytes < end
        });
        if let Some(q) = clash {
            let reason = format!("overlaps partition {}", q.number);
            self.skip(p.number, reason);
            return false;
        }
        self.partitions.push(p);
        true
    }
}

fn read_mbr<S: BlockSource + ?Sized>(
    disk: &S,
    sector0: &[u8; 512],
    entries: &[MbrEntry; 4],
) -> Result<PartitionTable> {
    const SS: u64 = 512;
    let mut c = Collector {
        disk_size: disk.size(),
        partitions: Vec::new(),
        skipped: Vec::new(),
    };
    let mut warnings = Vec::new();
    let mut extended: Option<(u64, u64)> = None;
    for (i, e) in entries.iter().enumerate() {
        let number = i as u32 + 1;
        if e.kind == 0 {
            continue;
        }
        if e.start == 0 {
            c.skip(number, "starts at sector 0 (the MBR itself)");
            continue;
        }
        let p = Partition {
            number,
            start_bytes: e.start * SS,
            size_bytes: e.sectors * SS,
            partition_type: PartitionType::Mbr(e.kind),
            name: None,
            partition_guid: None,
            bootable: e.status == 0x80,
        };
        let is_ext = p.partition_type.is_extended();
        if c.accept(p, false) && is_ext {
            if extended.is_some() {
                warnings.push(format!("second extended partition {number} not followed"));
            } else {
                extended = Some((e.start, e.sectors));
            }
        }
    }
    if let Some((ext_start, ext_sectors)) = extended {
        walk_ebr_chain(disk, ext_start, ext_sectors, &mut c, &mut warnings)?;
    }
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        disk_guid: None,
        mbr_signature: Some(le32(sector0, 440)),
        sector_size: SS as u32,
        partitions: c.partitions,
        skipped: c.skipped,
        warnings,
    })
}

/// Follows the linked list of extended boot records. Each EBR's first entry is a logical
/// partition (relative to that EBR), its second the next EBR (relative to the container).
fn walk_ebr_chain<S: BlockSource + ?Sized>(
    disk: &S,
    ext_start: u64,
    ext_sectors: u64,
    c: &mut Collector,
    warnings: &mut Vec<String>,
) -> Result<()> {
    const SS: u64 = 512;
    let ext_end = ext_start + ext_sectors;
    let mut seen = HashSet::new();
    let mut ebr = ext_start;
    let mut number = 5u32;
    for _ in 0..MAX_LOGICAL_PARTITIONS {
        if !seen.insert(ebr) {
            warnings.push(format!("EBR chain loops back to sector {ebr}; stopped"));
            return Ok(());
        }
        if ebr < ext_start || ebr >= ext_end {
            warnings.push(format!(
                "EBR at sector {ebr} lies outside the extended partition"
            ));
            return Ok(());
        }
        let mut sector = [0u8; 512];
        disk.read_at(ebr * SS, &mut sector)?;
        if sector[510..512] != [0x55, 0xaa] {
            warnings.push(format!(
                "EBR at sector {ebr} has no 0x55AA signature; chain ends"
            ));
            return Ok(());
        }
        let [logical, next, ..] = mbr_entries(&sector);
        if logical.kind != 0 && logical.sectors != 0 {
            let start = ebr + logical.start;
            if logical.start == 0 || start + logical.sectors > ext_end {
                c.skip(
                    number,
                    format!(
                        "logical partition at sector {start} is outside its extended partition"
                    ),
                );
            } else {
                let p = Partition {
                    number,
                    start_bytes: start * SS,
                    size_bytes: logical.sectors * SS,
                    partition_type: PartitionType::Mbr(logical.kind),
                    name: None,
                    partition_guid: None,
                    bootable: logical.status == 0x80,
                };
                c.accept(p, true);
            }
            number += 1;
        }
        if next.kind == 0 || next.start == 0 {
            return Ok(());
        }
        ebr = ext_start + next.start;
    }
    warnings.push(format!(
        "more than {MAX_LOGICAL_PARTITIONS} logical partitions; the rest are ignored"
    ));
    Ok(())
}

/// A validated GPT header.
struct GptHeader {
    disk_guid: Guid,
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

fn read_gpt<S: BlockSource + ?Sized>(disk: &S) -> Result<PartitionTable> {
    // The header sits in LBA 1, so its position tells the logical sector size.
    let mut sector_size = 512u64;
    for ss in [512u64, 4096] {
        let mut sig = [0u8; 8];
        if ss + 8 <= disk.size() {
            disk.read_at(ss, &mut sig)?;
            if &sig == b"EFI PART" {
                sector_size = ss;
                break;
            }
        }
    }
    let sectors = disk.size() / sector_size;
    let mut warnings = Vec::new();
    let primary = read_gpt_copy(disk, sector_size, 1);
    let (header, entries) = match primary {
        Ok(found) => found,
        Err(primary_err) => {
            let backup_lba = sectors.checked_sub(1).ok_or_else(|| {
                Error::corrupt("GPT", "disk too small for a backup header".to_string())
            })?;
            match read_gpt_copy(disk, sector_size, backup_lba) {
                Ok(found) => {
                    warnings.push(format!(
                        "primary GPT rejected ({primary_err}); using the backup at LBA {backup_lba}"
                    ));
                    found
                }
                Err(backup_err) => {
                    return Err(Error::corrupt(
                        "GPT",
                        format!("primary: {primary_err}; backup: {backup_err}"),
                    ));
                }
            }
        }
    };
    let mut c = Collector {
        disk_size: disk.size(),
        partitions: Vec::new(),
        skipped: Vec::new(),
    };
    let es = header.entry_size as usize;
    for (i, e) in entries.chunks_exact(es).enumerate() {
        let number = i as u32 + 1;
        let mut type_bytes = [0u8; 16];
        type_bytes.copy_from_slice(&e[0..16]);
        let type_guid = Guid(type_bytes);
        if type_guid.is_zero() {
            continue;
        }
        let mut uniq = [0u8; 16];
        uniq.copy_from_slice(&e[16..32]);
        let first = le64(e, 32);
        let last = le64(e, 40);
        let attrs = le64(e, 48);
        if first > last {
            c.skip(
                number,
                format!("first LBA {first} is after last LBA {last}"),
            );
            continue;
        }
        if first < header.first_usable || last > header.last_usable {
            c.skip(
                number,
                format!(
                    "LBAs {first}..={last} are outside the usable range {}..={}",
                    header.first_usable, header.last_usable
                ),
            );
            continue;
        }
        let (Some(start_bytes), Some(size_bytes)) = (
            first.checked_mul(sector_size),
            (last - first + 1).checked_mul(sector_size),
        ) else {
            c.skip(number, "byte range overflows");
            continue;
        };
        let units: Vec<u16> = e[56..es.min(56 + 72)]
            .chunks_exact(2)
            .map(|u| u16::from_le_bytes([u[0], u[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&units);
        c.accept(
            Partition {
                number,
                start_bytes,
                size_bytes,
                partition_type: PartitionType::Gpt(type_guid),
                name: Some(name),
                partition_guid: Some(Guid(uniq)),
                bootable: attrs & 0b100 != 0,
            },
            false,
        );
    }
    Ok(PartitionTable {
        kind: TableKind::Gpt,
        disk_guid: Some(header.disk_guid),
        mbr_signature: None,
        sector_size: sector_size as u32,
        partitions: c.partitions,
        skipped: c.skipped,
        warnings,
    })
}

/// Reads and validates the GPT header at `lba` and its entry array (both CRCs).
fn read_gpt_copy<S: BlockSource + ?Sized>(
    disk: &S,
    sector_size: u64,
    lba: u64,
) -> Result<(GptHeader, Vec<u8>)> {
    let bad = |detail: String| Error::corrupt("GPT header", format!("at LBA {lba}: {detail}"));
    let sectors = disk.size() / sector_size;
    if lba >= sectors {
        return Err(bad("beyond the end of the disk".into()));
    }
    let mut h = vec![0u8; sector_size as usize];
    disk.read_at(lba * sector_size, &mut h)?;
    if &h[0..8] != b"EFI PART" {
        return Err(bad("no EFI PART signature".into()));
    }
    let header_size = le32(&h, 12) as usize;
    if !(92..=h.len()).contains(&header_size) {
        return Err(bad(format!(
            "header size {header_size} is not in 92..={}",
            h.len()
        )));
    }
    let stored_crc = le32(&h, 16);
    let mut crc_buf = h[..header_size].to_vec();
    crc_buf[16..20].fill(0);
    let crc = crc32fast::hash(&crc_buf);
    if crc != stored_crc {
        return Err(bad(format!(
            "header CRC {crc:#010x} != stored {stored_crc:#010x}"
        )));
    }
    let my_lba = le64(&h, 24);
    if my_lba != lba {
        return Err(bad(format!("header says it is at LBA {my_lba}")));
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&h[56..72]);
    let header = GptHeader {
        disk_guid: Guid(guid),
        first_usable: le64(&h, 40),
        last_usable: le64(&h, 48),
        entries_lba: le64(&h, 72),
        entry_count: le32(&h, 80),
        entry_size: le32(&h, 84),
        entries_crc: le32(&h, 88),
    };
    // A usable range past the end of the disk is tolerated (a truncated image): entries that
    // reach beyond the disk are skipped one by one instead.
    if header.first_usable > header.last_usable {
        return Err(bad(format!(
            "usable range {}..={} is empty",
            header.first_usable, header.last_usable
        )));
    }
    if header.entry_size < 128 || !header.entry_size.is_multiple_of(8) || header.entry_size > 4096 {
        return Err(bad(format!(
            "entry size {} is not a sane size",
            header.entry_size
        )));
    }
    let array_len = u64::from(header.entry_count) * u64::from(header.entry_size);
    if array_len > MAX_GPT_ENTRY_ARRAY {
        return Err(Error::Limit(format!(
            "GPT at LBA {lba}: entry array of {} x {} bytes exceeds {MAX_GPT_ENTRY_ARRAY} bytes",
            header.entry_count, header.entry_size
        )));
    }
    let array_at = header
        .entries_lba
        .checked_mul(sector_size)
        .filter(|at| {
            at.checked_add(array_len)
                .is_some_and(|end| end <= disk.size())
        })
        .ok_or_else(|| {
            bad(format!(
                "entry array at LBA {} is outside the disk",
                header.entries_lba
            ))
        })?;
    let mut entries = vec![0u8; array_len as usize];
    disk.read_at(array_at, &mut entries)?;
    let crc = crc32fast::hash(&entries);
    if crc != header.entries_crc {
        return Err(bad(format!(
            "entry array CRC {crc:#010x} != stored {:#010x}",
            header.entries_crc
        )));
    }
    Ok((header, entries))
}
