//! LVM2 volume groups built by the real lvm tools, checked against `lvs`/`pvs`/`vgs` reports and
//! against data the recipe wrote into exactly the physical extents LVM reported for each LV.

use guestkit_block::{BlockSource, FileSource};
use guestkit_volumes::lvm::{PhysicalVolume, VolumeGroup};
use guestkit_volumes::read_partition_table;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Rows of LVM's JSON report `file` that belong to VG `vg`.
fn report(dir: &Path, file: &str, key: &str, vg: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let rows = v["report"][0][key].as_array().unwrap();
    rows.iter()
        .filter(|r| r["vg_name"] == vg)
        .cloned()
        .collect()
}

fn bytes(v: &Value) -> u64 {
    v.as_str().unwrap().trim_end_matches('B').parse().unwrap()
}

fn whole_file_pv(dir: &Path, name: &str) -> PhysicalVolume {
    let whole: Arc<dyn BlockSource> = Arc::new(FileSource::open(&dir.join(name)).unwrap());
    PhysicalVolume::probe(whole).unwrap().expect("PV label")
}

/// PV 1 is GPT partition 2 of disk1.raw, PV 2 the whole of pv2.raw.
fn open_pvs(dir: &Path) -> (PhysicalVolume, PhysicalVolume) {
    let disk: Arc<dyn BlockSource> = Arc::new(FileSource::open(&dir.join("disk1.raw")).unwrap());
    let table = read_partition_table(&disk).unwrap().unwrap();
    let part = table.get(2).unwrap();
    assert_eq!(part.partition_type.friendly_name(), Some("Linux LVM"));
    let pv1 = PhysicalVolume::probe(Arc::new(part.open(disk.clone()).unwrap()))
        .unwrap()
        .expect("PV label on partition 2");
    let pv2 = whole_file_pv(dir, "pv2.raw");
    // The whole disk and partition 1 are not PVs.
    assert!(PhysicalVolume::probe(disk.clone()).unwrap().is_none());
    let p1 = Arc::new(table.get(1).unwrap().open(disk).unwrap());
    assert!(PhysicalVolume::probe(p1).unwrap().is_none());
    (pv1, pv2)
}

#[test]
fn pvs_and_vg_match_lvm_reports() {
    let dir = guestkit_fixtures::build("vol-lvm");
    let (pv1, pv2) = open_pvs(&dir);
    let pvs = report(&dir, "pvs.json", "pv", "vgtest");
    // Report order is device order: loop for PV 1 was attached first.
    let mut want: Vec<&str> = pvs.iter().map(|p| p["pv_uuid"].as_str().unwrap()).collect();
    want.sort();
    let mut got = vec![pv1.uuid.as_str(), pv2.uuid.as_str()];
    got.sort();
    assert_eq!(got, want);
    let vgs = report(&dir, "vgs.json", "vg", "vgtest");
    let vg = VolumeGroup::assemble(vec![pv1, pv2]).unwrap();
    assert_eq!(vg.name, vgs[0]["vg_name"].as_str().unwrap());
    assert_eq!(vg.uuid, vgs[0]["vg_uuid"].as_str().unwrap());
    assert_eq!(vg.seqno.to_string(), vgs[0]["vg_seqno"].as_str().unwrap());
    assert_eq!(vg.extent_size, bytes(&vgs[0]["vg_extent_size"]));
    assert!(vg.missing_pvs().is_empty());
}

#[test]
fn lvs_match_lvs_report_and_read_back_the_oracle_data() {
    let dir = guestkit_fixtures::build("vol-lvm");
    let (pv1, pv2) = open_pvs(&dir);
    let vg = VolumeGroup::assemble(vec![pv2, pv1]).unwrap();
    let segs = report(&dir, "lvs.json", "seg", "vgtest");
    let mut names: Vec<&str> = segs
        .iter()
        .map(|s| s["lv_name"].as_str().unwrap())
        .collect();
    names.dedup();
    let mut ours: Vec<&str> = vg
        .logical_volumes()
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    ours.sort();
    assert_eq!(ours, names);
    for name in names {
        let lv = vg.lv(name).unwrap();
        let theirs: Vec<&Value> = segs.iter().filter(|s| s["lv_name"] == name).collect();
        assert_eq!(lv.uuid, theirs[0]["lv_uuid"].as_str().unwrap(), "{name}");
        assert_eq!(lv.size_bytes, bytes(&theirs[0]["lv_size"]), "{name}");
        let mut tags = lv.tags.clone();
        tags.sort();
        assert_eq!(
            tags.join(","),
            theirs[0]["lv_tags"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(lv.segments.len(), theirs.len(), "{name}");
        for (seg, t) in lv.segments.iter().zip(&theirs) {
            assert_eq!(
                seg.start_extent.to_string(),
                t["seg_start_pe"].as_str().unwrap()
            );
            assert_eq!(
                seg.extent_count.to_string(),
                t["seg_size_pe"].as_str().unwrap()
            );
            assert_eq!(
                seg.stripes.len().to_string(),
                t["stripes"].as_str().unwrap()
            );
            assert_eq!(
                seg.stripe_size.unwrap_or(0),
                bytes(&t["stripe_size"]),
                "{name}"
            );
            let their_starts: Vec<u64> = t["seg_pe_ranges"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .map(|r| {
                    r.rsplit_once(':')
                        .unwrap()
                        .1
                        .split('-')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect();
            let our_starts: Vec<u64> = seg.stripes.iter().map(|s| s.start_extent).collect();
            assert_eq!(our_starts, their_starts, "{name}");
        }
        assert!(lv.is_readable());
        let reader = vg.open_lv(name).unwrap();
        assert_eq!(reader.size(), lv.size_bytes);
        let expected = std::fs::read(dir.join(format!("lv-{name}.expected"))).unwrap();
        let mut whole = vec![0u8; expected.len()];
        reader.read_at(0, &mut whole).unwrap();
        assert!(whole == expected, "LV {name} differs from the oracle");
        // Unaligned reads that cross stripe chunks and segment boundaries.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let off = state % lv.size_bytes;
            let len = ((state >> 32) % 300_000).min(lv.size_bytes - off) as usize;
            let mut buf = vec![0u8; len];
            reader.read_at(off, &mut buf).unwrap();
            assert!(
                buf[..] == expected[off as usize..off as usize + len],
                "{name} @{off}+{len}"
            );
        }
        let mut one = [0u8; 1];
        assert!(reader.read_at(lv.size_bytes, &mut one).is_err());
    }
}

#[test]
fn missing_pv_is_reported_and_its_lvs_refuse_to_open() {
    let dir = guestkit_fixtures::build("vol-lvm");
    let (pv1, pv2) = open_pvs(&dir);
    let pv2_uuid = pv2.uuid.clone();
    let vg = VolumeGroup::assemble(vec![pv1]).unwrap();
    assert_eq!(vg.missing_pvs(), vec![pv2_uuid]);
    // `lin` and `gap` live on PV 1 only; `str` and `mixed` need PV 2.
    assert!(vg.open_lv("lin").is_ok());
    let err = vg
        .open_lv("str")
        .err()
        .expect("str needs the missing PV")
        .to_string();
    assert!(err.contains("not supplied"), "{err}");
}

#[test]
fn metadata_that_wraps_around_the_ring_is_read() {
    let dir = guestkit_fixtures::build("vol-lvm");
    // The recipe rewrote the metadata until pv2.raw's current copy straddled the ring's end.
    let wrapped = std::fs::read_to_string(dir.join("wrapped.txt")).unwrap();
    let field = |k: &str| -> u64 {
        wrapped
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        field("offset") + field("text_size") > field("mda_size"),
        "{wrapped}"
    );
    let (_, pv2) = open_pvs(&dir);
    let text = pv2.read_metadata_text().unwrap();
    assert_eq!(text.len() as u64, field("text_size"));
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("vgtest {"), "{text}");
    assert!(text.contains("contents = \"Text Format Volume Group\""));
    // Alone, PV 2 still yields the whole VG description.
    let vg = VolumeGroup::assemble(vec![pv2]).unwrap();
    assert_eq!(vg.logical_volumes().len(), 4);
}

#[test]
fn pvs_of_two_vgs_are_sorted_into_their_groups() {
    let dir = guestkit_fixtures::build("vol-lvm");
    let (pv1, pv2) = open_pvs(&dir);
    let pv3 = whole_file_pv(&dir, "pv3.raw");
    let scan = VolumeGroup::assemble_all(vec![pv1, pv3, pv2]);
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    let mut names: Vec<&str> = scan.volume_groups.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["vgother", "vgtest"]);
    let other = scan
        .volume_groups
        .iter()
        .find(|v| v.name == "vgother")
        .unwrap();
    let vgs = report(&dir, "vgs.json", "vg", "vgother");
    assert_eq!(other.uuid, vgs[0]["vg_uuid"].as_str().unwrap());
    assert_eq!(other.extent_size, bytes(&vgs[0]["vg_extent_size"]));
    let segs = report(&dir, "lvs.json", "seg", "vgother");
    let solo = other.lv("solo").unwrap();
    assert_eq!(solo.uuid, segs[0]["lv_uuid"].as_str().unwrap());
    assert_eq!(solo.size_bytes, bytes(&segs[0]["lv_size"]));
    let reader = other.open_lv("solo").unwrap();
    let mut data = vec![0u8; solo.size_bytes as usize];
    reader.read_at(0, &mut data).unwrap();
    assert!(data == std::fs::read(dir.join("lv-solo.expected")).unwrap());
    let tested = scan
        .volume_groups
        .iter()
        .find(|v| v.name == "vgtest")
        .unwrap();
    assert_eq!(tested.logical_volumes().len(), 4);
    assert!(tested.missing_pvs().is_empty());
}
