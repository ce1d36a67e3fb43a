//! LVM2: physical volume labels, the text metadata in their metadata areas, volume groups
//! assembled from one or more PVs, and logical volumes read as [`BlockSource`]s.
//!
//! Linear and striped segments are read; other segment types (thin, raid, mirror, snapshot,
//! cache, ...) are listed and refused with [`Error::Unsupported`] when opened.

use crate::lvm_text::{self, Section, Value};
use guestkit_block::{BlockSource, Error, Result, check_range};
use std::collections::HashMap;
use std::sync::Arc;

const SECTOR: u64 = 512;
/// LVM's CRC seed (`INITIAL_CRC` in lvm2).
const INITIAL_CRC: u32 = 0xf597_a6cf;
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
const MDA_HEADER_SIZE: u64 = 512;
/// Largest metadata text read from one metadata area.
pub const MAX_METADATA_TEXT: u64 = 16 << 20;
/// Most PVs, LVs, and segments per LV accepted in one volume group.
pub const MAX_OBJECTS: usize = 4096;

/// LVM's CRC: the reflected CRC-32 polynomial without the final inversion, seeded with
/// [`INITIAL_CRC`]. Expressed through crc32fast, which pre- and post-inverts.
fn lvm_crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!INITIAL_CRC);
    for p in parts {
        h.update(p);
    }
    !h.finalize()
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

/// Formats a 32-character LVM id the way LVM prints it (6-4-4-4-4-4-6).
fn dashed_uuid(raw: &str) -> String {
    let mut out = String::with_capacity(38);
    for (i, c) in raw.chars().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// A disk range `(offset, size)` in bytes, as stored in the PV header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskArea {
    /// Byte offset on the PV.
    pub offset: u64,
    /// Length in bytes (0 = to the end of the device, for data areas).
    pub size: u64,
}

/// A physical volume found by its `LABELONE` label.
#[derive(Clone)]
pub struct PhysicalVolume {
    /// PV UUID in LVM's dashed form.
    pub uuid: String,
    /// Device size recorded in the PV header, in bytes.
    pub device_size: u64,
    /// Data areas (where extents live).
    pub data_areas: Vec<DiskArea>,
    /// Metadata areas.
    pub metadata_areas: Vec<DiskArea>,
    source: Arc<dyn BlockSource>,
}

impl std::fmt::Debug for PhysicalVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysicalVolume")
            .field("uuid", &self.uuid)
            .field("device_size", &self.device_size)
            .field("data_areas", &self.data_areas)
            .field("metadata_areas", &self.metadata_areas)
            .field("source_size", &self.source.size())
            .finish()
    }
}

impl PhysicalVolume {
    /// Looks for an LVM2 label in the first four sectors of `source`. `Ok(None)` if there is none.
    pub fn probe(source: Arc<dyn BlockSource>) -> Result<Option<PhysicalVolume>> {
        for sector in 0..4u64 {
            let at = sector * SECTOR;
            if at + SECTOR > source.size() {
                return Ok(None);
            }
            let mut s = [0u8; 512];
            source.read_at(at, &mut s)?;
            if &s[0..8] != b"LABELONE" {
                continue;
            }
            let bad = |d: String| Error::corrupt("LVM label", format!("in sector {sector}: {d}"));
            if le64(&s, 8) != sector {
                return Err(bad(format!("claims to be in sector {}", le64(&s, 8))));
            }
            let crc = lvm_crc(&[&s[20..]]);
            if crc != le32(&s, 16) {
                return Err(bad(format!(
                    "CRC {crc:#010x} != stored {:#010x}",
                    le32(&s, 16)
                )));
            }
            if &s[24..32] != b"LVM2 001" {
                return Err(Error::Unsupported(format!(
                    "LVM label type {:?}",
                    String::from_utf8_lossy(&s[24..32])
                )));
            }
            let off = le32(&s, 20) as usize;
            // The PV header: 32-byte UUID, device size, then two zero-terminated area lists.
            if !(32..=512 - 56).contains(&off) {
                return Err(bad(format!("PV header offset {off} is outside the sector")));
            }
            let h = &s[off..];
            let uuid_raw = &h[0..32];
            if !uuid_raw.iter().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad("PV UUID is not alphanumeric".into()));
            }
            let uuid = dashed_uuid(&String::from_utf8_lossy(uuid_raw));
            let device_size = le64(h, 32);
            let mut pos = 40;
            let mut lists = [Vec::new(), Vec::new()];
            for list in &mut lists {
                // Bounded by the sector: each entry is 16 bytes.
                loop {
                    if pos + 16 > h.len() {
                        return Err(bad("area list runs off the sector".into()));
                    }
                    let area = DiskArea {
                        offset: le64(h, pos),
                        size: le64(h, pos + 8),
                    };
                    pos += 16;
                    if area.offset == 0 {
                        break;
                    }
                    list.push(area);
                }
            }
            let [data_areas, metadata_areas] = lists;
            return Ok(Some(PhysicalVolume {
                uuid,
                device_size,
                data_areas,
                metadata_areas,
                source,
            }));
        }
        Ok(None)
    }

    /// Reads the current metadata text of the first usable metadata area.
    pub fn read_metadata_text(&self) -> Result<Vec<u8>> {
        let mut last_err = None;
        for mda in &self.metadata_areas {
            match self.read_mda(mda) {
                Ok(Some(text)) => return Ok(text),
                Ok(None) => {}
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            Error::Unsupported(format!(
                "PV {} has no usable metadata area (metadata is held by other PVs)",
                self.uuid
            ))
        }))
    }

    /// One metadata area: header, first raw location, text (possibly wrapped), checksum.
    fn read_mda(&self, mda: &DiskArea) -> Result<Option<Vec<u8>>> {
        let bad =
            |d: String| Error::corrupt("LVM metadata area", format!("at byte {}: {d}", mda.offset));
        if mda.size <= MDA_HEADER_SIZE {
            return Err(bad(format!("size {} is too small", mda.size)));
        }
        let mut h = [0u8; 512];
        self.source.read_at(mda.offset, &mut h)?;
        if &h[4..20] != MDA_MAGIC {
            return Err(bad("bad magic".into()));
        }
        let crc = lvm_crc(&[&h[4..]]);
        if crc != le32(&h, 0) {
            return Err(bad(format!(
                "header CRC {crc:#010x} != stored {:#010x}",
                le32(&h, 0)
            )));
        }
        if le64(&h, 24) != mda.offset {
            return Err(bad(format!("header says it starts at {}", le64(&h, 24))));
        }
        let area_size = le64(&h, 32);
        if area_size != mda.size {
            return Err(bad(format!(
                "header size {area_size} != PV header's {}",
                mda.size
            )));
        }
        // raw_locn[0]: offset, size, checksum, flags.
        let (offset, size, checksum, flags) =
            (le64(&h, 40), le64(&h, 48), le32(&h, 56), le32(&h, 60));
        const RAW_LOCN_IGNORED: u32 = 1;
        if offset == 0 || size == 0 || flags & RAW_LOCN_IGNORED != 0 {
            return Ok(None);
        }
        if size > MAX_METADATA_TEXT {
            return Err(Error::Limit(format!(
                "LVM metadata text of {size} bytes exceeds {MAX_METADATA_TEXT}"
            )));
        }
        if offset < MDA_HEADER_SIZE || offset >= area_size || size > area_size - MDA_HEADER_SIZE {
            return Err(bad(format!("text at {offset}+{size} is outside the area")));
        }
        // The area is a ring after its header: text running past the end continues right
        // after the header.
        let first = size.min(area_size - offset);
        let mut text = vec![0u8; size as usize];
        let (a, b) = text.split_at_mut(first as usize);
        self.source.read_at(mda.offset + offset, a)?;
        if !b.is_empty() {
            self.source.read_at(mda.offset + MDA_HEADER_SIZE, b)?;
        }
        let crc = lvm_crc(&[&text]);
        if crc != checksum {
            return Err(bad(format!(
                "text CRC {crc:#010x} != stored {checksum:#010x}"
            )));
        }
        Ok(Some(text))
    }

    /// The device this PV was read from.
    pub fn source(&self) -> &Arc<dyn BlockSource> {
        &self.source
    }
}

/// One stripe of a segment: which PV and the first physical extent on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeArea {
    /// The PV's name inside the VG metadata (`pv0`, `pv1`, ...).
    pub pv_name: String,
    /// The PV's UUID, if the metadata names a known PV.
    pub pv_uuid: Option<String>,
    /// First physical extent on that PV.
    pub start_extent: u64,
}

/// A segment of a logical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// First logical extent of the LV this segment maps.
    pub start_extent: u64,
    /// Number of logical extents it maps.
    pub extent_count: u64,
    /// Segment type as LVM names it (`striped` for linear too, `thin`, `raid1`, ...).
    pub segment_type: String,
    /// Stripe size in bytes (striped segments with more than one stripe).
    pub stripe_size: Option<u64>,
    /// The stripes (one for a linear segment); empty for non-striped types.
    pub stripes: Vec<StripeArea>,
}

/// A logical volume as described by the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    /// LV name.
    pub name: String,
    /// LV UUID, dashed.
    pub uuid: String,
    /// Size in bytes (sum of its segments).
    pub size_bytes: u64,
    /// Status flags (`READ`, `WRITE`, `VISIBLE`, ...).
    pub status: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Segments in logical order.
    pub segments: Vec<Segment>,
}

impl LogicalVolume {
    /// True when every segment is linear or striped, i.e. [`VolumeGroup::open_lv`] can read it.
    pub fn is_readable(&self) -> bool {
        self.segments.iter().all(|s| s.segment_type == "striped")
    }
}

/// A volume group assembled from its PVs' metadata.
#[derive(Clone)]
pub struct VolumeGroup {
    /// VG name.
    pub name: String,
    /// VG UUID, dashed.
    pub uuid: String,
    /// Metadata sequence number that was used.
    pub seqno: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    /// PV names in the metadata mapped to their UUIDs and first-extent byte offsets.
    pv_layout: HashMap<String, PvLayout>,
    /// Sources of the PVs that were supplied, by UUID.
    sources: HashMap<String, Arc<dyn BlockSource>>,
    lvs: Vec<LogicalVolume>,
}

impl std::fmt::Debug for VolumeGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeGroup")
            .field("name", &self.name)
            .field("uuid", &self.uuid)
            .field("seqno", &self.seqno)
            .field("extent_size", &self.extent_size)
            .field("pv_layout", &self.pv_layout)
            .field("supplied_pvs", &self.sources.keys().collect::<Vec<_>>())
            .field("lvs", &self.lvs)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct PvLayout {
    uuid: String,
    pe_start: u64,
    pe_count: u64,
}

impl VolumeGroup {
    /// Assembles a VG from `pvs` (all PVs of one VG; missing ones make the LVs that use them
    /// fail to open). The metadata with the highest sequence number among the PVs wins.
    pub fn assemble(pvs: Vec<PhysicalVolume>) -> Result<VolumeGroup> {
        if pvs.len() > MAX_OBJECTS {
            return Err(Error::Limit(format!("more than {MAX_OBJECTS} PVs")));
        }
        let mut best: Option<(u64, String, Section)> = None;
        let mut errors = Vec::new();
        for pv in &pvs {
            let text = match pv.read_metadata_text() {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("PV {}: {e}", pv.uuid));
                    continue;
                }
            };
            let (name, vg) = match vg_section(&text) {
                Ok(found) => found,
                Err(e) => {
                    errors.push(format!("PV {}: {e}", pv.uuid));
                    continue;
                }
            };
            let seqno = vg
                .int("seqno")
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0);
            if let Some((_, best_name, best_vg)) = &best
                && best_vg.str("id") != vg.str("id")
            {
                return Err(Error::corrupt(
                    "LVM text metadata",
                    format!("PVs belong to different VGs ({best_name} and {name})"),
                ));
            }
            if best.as_ref().is_none_or(|(s, _, _)| seqno > *s) {
                best = Some((seqno, name, vg));
            }
        }
        let Some((seqno, name, vg)) = best else {
            return Err(Error::corrupt(
                "LVM volume group",
                format!("no PV has readable metadata: {}", errors.join("; ")),
            ));
        };
        let sources = pvs
            .into_iter()
            .map(|pv| (pv.uuid.clone(), pv.source))
            .collect();
        Self::from_metadata(name, seqno, &vg, sources)
    }

    /// Sorts `pvs` into their volume groups (by VG UUID; PVs without metadata of their own join
    /// the VG whose metadata lists them) and assembles each. PVs that belong nowhere, and VGs
    /// that fail to assemble, are reported in [`Scan::problems`].
    pub fn assemble_all(pvs: Vec<PhysicalVolume>) -> Scan {
        let mut problems = Vec::new();
        // (VG id, PV UUIDs its metadata lists, member PVs)
        let mut groups: Vec<(String, Vec<String>, Vec<PhysicalVolume>)> = Vec::new();
        let mut without_metadata = Vec::new();
        for pv in pvs.into_iter().take(MAX_OBJECTS) {
            let parsed = pv.read_metadata_text().and_then(|text| {
                let (_, vg) = vg_section(&text)?;
                let id = vg.str("id").unwrap_or_default().to_string();
                let members: Vec<String> = vg
                    .section("physical_volumes")
                    .map(|s| {
                        s.sections()
                            .take(MAX_OBJECTS)
                            .filter_map(|(_, p)| p.str("id").map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((id, members))
            });
            match parsed {
                Ok((id, members)) => match groups.iter_mut().find(|g| g.0 == id) {
                    Some(g) => g.2.push(pv),
                    None => groups.push((id, members, vec![pv])),
                },
                Err(e) => without_metadata.push((pv, e.to_string())),
            }
        }
        for (pv, why) in without_metadata {
            match groups.iter_mut().find(|g| g.1.contains(&pv.uuid)) {
                Some(g) => g.2.push(pv),
                None => problems.push(format!("PV {} belongs to no VG found: {why}", pv.uuid)),
            }
        }
        let mut vgs = Vec::new();
        for (id, _, members) in groups {
            match VolumeGroup::assemble(members) {
                Ok(vg) => vgs.push(vg),
                Err(e) => problems.push(format!("VG {id}: {e}")),
            }
        }
        Scan {
            volume_groups: vgs,
            problems,
        }
    }

    fn from_metadata(
        name: String,
        seqno: u64,
        vg: &Section,
        sources: HashMap<String, Arc<dyn BlockSource>>,
    ) -> Result<VolumeGroup> {
        let bad = |d: String| Error::corrupt("LVM volume group metadata", format!("{name}: {d}"));
        let extent_sectors = positive(vg.int("extent_size"))
            .ok_or_else(|| bad("missing or invalid extent_size".into()))?;
        let extent_size = extent_sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| bad("extent_size overflows".into()))?;
        let mut pv_layout = HashMap::new();
        if let Some(pvs) = vg.section("physical_volumes") {
            for (pv_name, pv) in pvs.sections().take(MAX_OBJECTS + 1) {
                if pv_layout.len() == MAX_OBJECTS {
                    return Err(Error::Limit(format!(
                        "more than {MAX_OBJECTS} PVs in metadata"
                    )));
                }
                let uuid = pv
                    .str("id")
                    .ok_or_else(|| bad(format!("{pv_name} has no id")))?;
                let pe_start = nonneg(pv.int("pe_start"))
                    .and_then(|s| s.checked_mul(SECTOR))
                    .ok_or_else(|| bad(format!("{pv_name} has a bad pe_start")))?;
                let pe_count = nonneg(pv.int("pe_count"))
                    .ok_or_else(|| bad(format!("{pv_name} has a bad pe_count")))?;
                pv_layout.insert(
                    pv_name.to_string(),
                    PvLayout {
                        uuid: uuid.to_string(),
                        pe_start,
                        pe_count,
                    },
                );
            }
        }
        let mut lvs = Vec::new();
        if let Some(section) = vg.section("logical_volumes") {
            for (lv_name, lv) in section.sections() {
                if lvs.len() == MAX_OBJECTS {
                    return Err(Error::Limit(format!("more than {MAX_OBJECTS} LVs")));
                }
                lvs.push(
                    parse_lv(lv_name, lv, extent_size, &pv_layout)
                        .map_err(|e| bad(format!("LV {lv_name}: {e}")))?,
                );
            }
        }
        Ok(VolumeGroup {
            uuid: vg.str("id").unwrap_or_default().to_string(),
            name,
            seqno,
            extent_size,
            pv_layout,
            sources,
            lvs,
        })
    }

    /// All logical volumes, in metadata order (hidden sub-LVs included).
    pub fn logical_volumes(&self) -> &[LogicalVolume] {
        &self.lvs
    }

    /// The LV named `name`.
    pub fn lv(&self, name: &str) -> Option<&LogicalVolume> {
        self.lvs.iter().find(|l| l.name == name)
    }

    /// UUIDs of the PVs the metadata lists but that were not supplied.
    pub fn missing_pvs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pv_layout
            .values()
            .filter(|p| !self.sources.contains_key(&p.uuid))
            .map(|p| p.uuid.clone())
            .collect();
        v.sort();
        v
    }

    /// Opens LV `name` for reading. Fails with [`Error::Unsupported`] for segment types other
    /// than linear/striped, and with [`Error::Corrupt`] if a PV is missing or too small.
    pub fn open_lv(&self, name: &str) -> Result<LvReader> {
        let lv = self
            .lv(name)
            .ok_or_else(|| Error::corrupt("LVM volume group", format!("no LV named {name:?}")))?;
        let mut segments = Vec::with_capacity(lv.segments.len());
        for seg in &lv.segments {
            if seg.segment_type != "striped" {
                return Err(Error::Unsupported(format!(
                    "LV {name}: segment type {:?} (only linear and striped are read)",
                    seg.segment_type
                )));
            }
            let n = seg.stripes.len() as u64;
            let per_stripe = seg.extent_count / n;
            let mut stripes = Vec::with_capacity(seg.stripes.len());
            for st in &seg.stripes {
                let layout = self.pv_layout.get(&st.pv_name).ok_or_else(|| {
                    Error::corrupt(
                        "LVM segment",
                        format!("LV {name}: unknown PV {}", st.pv_name),
                    )
                })?;
                let source = self.sources.get(&layout.uuid).ok_or_else(|| {
                    Error::corrupt(
                        "LVM volume group",
                        format!(
                            "LV {name} needs PV {} ({}), which was not supplied",
                            st.pv_name, layout.uuid
                        ),
                    )
                })?;
                // Extents were checked against pe_count while parsing, so this cannot overflow
                // for sane sizes; checked anyway because the numbers come from the disk.
                let base = st
                    .start_extent
                    .checked_mul(self.extent_size)
                    .and_then(|b| b.checked_add(layout.pe_start))
                    .ok_or_else(|| Error::corrupt("LVM segment", "offset overflows"))?;
                let len = per_stripe * self.extent_size;
                if base.checked_add(len).is_none_or(|end| end > source.size()) {
                    return Err(Error::corrupt(
                        "LVM segment",
                        format!(
                            "LV {name}: extents {}+{per_stripe} of {} reach past the end of the PV ({} bytes)",
                            st.start_extent,
                            st.pv_name,
                            source.size()
                        ),
                    ));
                }
                stripes.push((source.clone(), base));
            }
            segments.push(MappedSegment {
                start: seg.start_extent * self.extent_size,
                len: seg.extent_count * self.extent_size,
                stripe_size: seg
                    .stripe_size
                    .unwrap_or(seg.extent_count * self.extent_size),
                stripes,
            });
        }
        Ok(LvReader {
            size: lv.size_bytes,
            segments,
        })
    }
}

/// The result of [`VolumeGroup::assemble_all`].
#[derive(Debug)]
pub struct Scan {
    /// The volume groups that assembled.
    pub volume_groups: Vec<VolumeGroup>,
    /// PVs that belong to no VG found, and VGs that failed to assemble, with the reason.
    pub problems: Vec<String>,
}

/// Parses metadata text and returns its (single) VG section with the VG's name.
fn vg_section(text: &[u8]) -> Result<(String, Section)> {
    let mut doc = lvm_text::parse(text)?;
    let idx = doc
        .entries
        .iter()
        .position(|(_, n)| matches!(n, lvm_text::Node::Section(_)))
        .ok_or_else(|| Error::corrupt("LVM text metadata", "no volume group section"))?;
    match doc.entries.swap_remove(idx) {
        (name, lvm_text::Node::Section(vg)) => Ok((name, vg)),
        _ => Err(Error::corrupt(
            "LVM text metadata",
            "no volume group section",
        )),
    }
}

fn positive(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0)
}

fn nonneg(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

fn strings(list: Option<&[Value]>) -> Vec<String> {
    list.unwrap_or_default()
        .iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn parse_lv(
    name: &str,
    lv: &Section,
    extent_size: u64,
    pvs: &HashMap<String, PvLayout>,
) -> Result<LogicalVolume> {
    let bad = |d: String| Error::corrupt("LVM logical volume", d);
    let mut segments: Vec<Segment> = Vec::new();
    let mut next_extent = 0u64;
    for (_, seg) in lv.sections().filter(|(k, _)| k.starts_with("segment")) {
        if segments.len() == MAX_OBJECTS {
            return Err(Error::Limit(format!("more than {MAX_OBJECTS} segments")));
        }
        let start_extent =
            nonneg(seg.int("start_extent")).ok_or_else(|| bad("bad start_extent".into()))?;
        let extent_count =
            positive(seg.int("extent_count")).ok_or_else(|| bad("bad extent_count".into()))?;
        if start_extent != next_extent {
            return Err(bad(format!(
                "segment starts at extent {start_extent}, expected {next_extent}"
            )));
        }
        next_extent = start_extent
            .checked_add(extent_count)
            .filter(|&e| e.checked_mul(extent_size).is_some())
            .ok_or_else(|| bad("extent count overflows".into()))?;
        let segment_type = seg
            .str("type")
            .ok_or_else(|| bad("segment without type".into()))?;
        let mut stripes = Vec::new();
        let mut stripe_size = None;
        if segment_type == "striped" {
            let list = seg
                .list("stripes")
                .ok_or_else(|| bad("striped segment without stripes".into()))?;
            if list.len() % 2 != 0 || list.is_empty() || list.len() / 2 > MAX_OBJECTS {
                return Err(bad(format!("stripes list has {} items", list.len())));
            }
            let n = (list.len() / 2) as u64;
            if let Some(count) = seg.int("stripe_count")
                && u64::try_from(count).ok() != Some(n)
            {
                return Err(bad(format!("stripe_count {count} but {n} stripes listed")));
            }
            if !extent_count.is_multiple_of(n) {
                return Err(bad(format!(
                    "{extent_count} extents do not split into {n} stripes"
                )));
            }
            let per_stripe = extent_count / n;
            for pair in list.chunks_exact(2) {
                let (Value::Str(pv_name), Value::Int(first)) = (&pair[0], &pair[1]) else {
                    return Err(bad("stripes entry is not \"pvN\", extent".into()));
                };
                let first = u64::try_from(*first).map_err(|_| bad("negative extent".into()))?;
                let layout = pvs
                    .get(pv_name)
                    .ok_or_else(|| bad(format!("stripe on unknown PV {pv_name}")))?;
                if first
                    .checked_add(per_stripe)
                    .is_none_or(|end| end > layout.pe_count)
                {
                    return Err(bad(format!(
                        "extents {first}+{per_stripe} exceed {pv_name}'s {} extents",
                        layout.pe_count
                    )));
                }
                stripes.push(StripeArea {
                    pv_name: pv_name.clone(),
                    pv_uuid: Some(layout.uuid.clone()),
                    start_extent: first,
                });
            }
            if n > 1 {
                let sectors = positive(seg.int("stripe_size"))
                    .ok_or_else(|| bad("striped segment without stripe_size".into()))?;
                let bytes = sectors
                    .checked_mul(SECTOR)
                    .ok_or_else(|| bad("stripe_size overflows".into()))?;
                if !(per_stripe * extent_size).is_multiple_of(bytes) {
                    return Err(bad(format!(
                        "stripe size {bytes} does not divide the stripe length"
                    )));
                }
                stripe_size = Some(bytes);
            }
        }
        segments.push(Segment {
            start_extent,
            extent_count,
            segment_type: segment_type.to_string(),
            stripe_size,
            stripes,
        });
    }
    Ok(LogicalVolume {
        name: name.to_string(),
        uuid: lv.str("id").unwrap_or_default().to_string(),
        size_bytes: next_extent * extent_size,
        status: strings(lv.list("status")),
        tags: strings(lv.list("tags")),
        segments,
    })
}

struct MappedSegment {
    /// Byte range of the LV this segment covers.
    start: u64,
    len: u64,
    /// Chunk size; the whole segment for a linear one.
    stripe_size: u64,
    /// Source and byte offset of each stripe's first extent.
    stripes: Vec<(Arc<dyn BlockSource>, u64)>,
}

/// A readable logical volume (linear and striped segments).
pub struct LvReader {
    size: u64,
    segments: Vec<MappedSegment>,
}

impl BlockSource for LvReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        // Each pass copies at least one byte, so this ends after at most buf.len() passes
        // (in practice one per stripe chunk touched).
        while done < buf.len() {
            let pos = offset + done as u64;
            // Segments are contiguous and sorted; binary search by start.
            let idx = self.segments.partition_point(|s| s.start + s.len <= pos);
            let seg = self.segments.get(idx).ok_or_else(|| {
                Error::corrupt("LVM segment map", format!("no segment covers byte {pos}"))
            })?;
            let in_seg = pos - seg.start;
            let chunk = in_seg / seg.stripe_size;
            let n = seg.stripes.len() as u64;
            let (source, base) = &seg.stripes[(chunk % n) as usize];
            let within = in_seg % seg.stripe_size;
            let phys = base + (chunk / n) * seg.stripe_size + within;
            let room = (seg.stripe_size - within).min(seg.start + seg.len - pos);
            let take = room.min((buf.len() - done) as u64) as usize;
            source.read_at(phys, &mut buf[done..done + take])?;
            done += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guestkit_block::MemSource;

    const META: &str = r#"
vg {
    id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg"
    seqno = 5
    extent_size = 8
    physical_volumes {
        pv0 { id = "P0" pe_start = 0 pe_count = 8 }
        pv1 { id = "P1" pe_start = 8 pe_count = 8 }
    }
    logical_volumes {
        thin { id = "T" status = ["READ"] segment_count = 1
            segment1 { start_extent = 0 extent_count = 2 type = "thin" thin_pool = "pool" } }
        two { id = "S" segment_count = 2
            segment1 { start_extent = 0 extent_count = 1 type = "striped" stripe_count = 1
                       stripes = ["pv1", 7] }
            segment2 { start_extent = 1 extent_count = 4 type = "striped" stripe_count = 2
                       stripe_size = 2 stripes = ["pv0", 0, "pv1", 0] } }
    }
}
"#;

    fn vg(meta: &str) -> Result<VolumeGroup> {
        let doc = lvm_text::parse(meta.as_bytes())?;
        let (name, vg) = doc.sections().next().expect("vg section");
        // PV n's bytes are all n+1 on the first half of each extent, and the extent number after.
        let pv = |tag: u8, extents: usize| -> Arc<dyn BlockSource> {
            let mut v = vec![0u8; 4096 + extents * 4096];
            for (i, b) in v.iter_mut().enumerate() {
                *b = tag.wrapping_mul(16).wrapping_add((i / 1024) as u8);
            }
            Arc::new(MemSource(v))
        };
        let sources = HashMap::from([("P0".to_string(), pv(1, 8)), ("P1".to_string(), pv(2, 8))]);
        VolumeGroup::from_metadata(name.to_string(), 5, vg, sources)
    }

    #[test]
    fn other_segment_types_are_listed_but_unsupported() {
        let vg = vg(META).unwrap();
        let thin = vg.lv("thin").unwrap();
        assert_eq!(thin.segments[0].segment_type, "thin");
        assert!(!thin.is_readable());
        assert!(matches!(vg.open_lv("thin"), Err(Error::Unsupported(_))));
    }

    #[test]
    fn striped_mapping_follows_chunks_round_robin() {
        let vg = vg(META).unwrap();
        let r = vg.open_lv("two").unwrap();
        assert_eq!(r.size(), 5 * 4096);
        // Chunk size 1024 bytes (2 sectors); each 1024-byte run of a PV has one value.
        let at = |off: u64| {
            let mut b = [0u8; 1];
            r.read_at(off, &mut b).unwrap();
            b[0]
        };
        // Segment 1: pv1 extent 7 -> pv1 byte 4096 + 7*4096.
        assert_eq!(at(0), 2 * 16 + ((4096 + 7 * 4096) / 1024) as u8);
        // Segment 2 chunk 0 -> pv0 row 0; chunk 1 -> pv1 row 0; chunk 2 -> pv0 row 1.
        assert_eq!(at(4096), 16);
        assert_eq!(at(4096 + 1024), 2 * 16 + (4096 / 1024) as u8);
        assert_eq!(at(4096 + 2048), 16 + 1);
    }

    #[test]
    fn bad_metadata_is_rejected() {
        for (from, to) in [
            ("stripes = [\"pv1\", 7]", "stripes = [\"pv1\", 8]"),
            ("stripes = [\"pv1\", 7]", "stripes = [\"pv9\", 0]"),
            ("start_extent = 1", "start_extent = 2"),
            ("extent_count = 4", "extent_count = 3"),
            ("stripe_size = 2 ", ""),
            ("extent_size = 8", "extent_size = 0"),
            ("extent_count = 1", "extent_count = -1"),
        ] {
            let meta = META.replacen(from, to, 1);
            assert_ne!(meta, META);
            assert!(vg(&meta).is_err(), "{from} -> {to}");
        }
    }

    #[test]
    fn lvm_crc_matches_lvm() {
        // calc_crc(INITIAL_CRC, "") is the seed itself.
        assert_eq!(lvm_crc(&[b""]), INITIAL_CRC);
        assert_eq!(lvm_crc(&[b"ab", b"c"]), lvm_crc(&[b"abc"]));
    }
}
