//! Partition tables written by sfdisk, checked against `sfdisk --json` of the same image.

use guestkit_block::{BlockSource, FileSource};
use guestkit_volumes::{PartitionType, TableKind, read_partition_table};
use serde_json::Value;
use std::path::Path;

fn sfdisk_json(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).expect("reading sfdisk json");
    let v: Value = serde_json::from_str(&text).expect("parsing sfdisk json");
    v["partitiontable"].clone()
}

/// Compares our table of `image` with sfdisk's report `json`, and checks each partition window
/// starts with the stamp the recipe wrote there.
fn check_against_sfdisk(image: &str, json: &str, stamp_tag: &str) {
    let dir = guestkit_fixtures::build("vol-parts");
    let disk = std::sync::Arc::new(FileSource::open(&dir.join(image)).unwrap());
    let table = read_partition_table(&disk).unwrap().expect("a table");
    let want = sfdisk_json(&dir, json);
    let ss = want["sectorsize"].as_u64().unwrap_or(512);
    assert_eq!(u64::from(table.sector_size), ss, "{image}");
    let want_parts = want["partitions"].as_array().unwrap();
    assert_eq!(
        table.partitions.len(),
        want_parts.len(),
        "{image}: {table:#?}"
    );
    assert!(table.skipped.is_empty(), "{image}: {:?}", table.skipped);
    let device = want["device"].as_str().unwrap();
    for (ours, theirs) in table.partitions.iter().zip(want_parts) {
        let number: u32 = theirs["node"].as_str().unwrap()[device.len()..]
            .trim_start_matches('p')
            .parse()
            .unwrap();
        assert_eq!(ours.number, number, "{image}");
        assert_eq!(
            ours.start_bytes,
            theirs["start"].as_u64().unwrap() * ss,
            "{image} #{number}"
        );
        assert_eq!(
            ours.size_bytes,
            theirs["size"].as_u64().unwrap() * ss,
            "{image} #{number}"
        );
        let ty = theirs["type"].as_str().unwrap();
        match (want["label"].as_str().unwrap(), ours.partition_type) {
            ("dos", PartitionType::Mbr(b)) => {
                assert_eq!(b, u8::from_str_radix(ty, 16).unwrap(), "{image} #{number}");
                assert_eq!(ours.bootable, theirs["bootable"].as_bool().unwrap_or(false));
                assert_eq!(table.kind, TableKind::Mbr);
            }
            ("gpt", PartitionType::Gpt(g)) => {
                assert_eq!(g.to_string(), ty, "{image} #{number}");
                assert_eq!(
                    ours.partition_guid.unwrap().to_string(),
                    theirs["uuid"].as_str().unwrap()
                );
                assert_eq!(ours.name.as_deref(), theirs["name"].as_str());
                assert_eq!(table.kind, TableKind::Gpt);
            }
            other => panic!("{image}: label/type mismatch {other:?}"),
        }
        if ours.partition_type.is_extended() {
            continue;
        }
        let window = ours.open(disk.clone()).unwrap();
        assert_eq!(window.size(), ours.size_bytes);
        let mut head = [0u8; 16];
        window.read_at(0, &mut head).unwrap();
        let stamp = format!("PART-{stamp_tag}-{number}");
        assert_eq!(&head[..stamp.len()], stamp.as_bytes(), "{image} #{number}");
        // The last byte is readable, one past it is not.
        let mut one = [0u8; 1];
        window.read_at(ours.size_bytes - 1, &mut one).unwrap();
        assert!(window.read_at(ours.size_bytes, &mut one).is_err());
    }
    if let Some(id) = want["id"].as_str() {
        match table.kind {
            TableKind::Gpt => assert_eq!(table.disk_guid.unwrap().to_string(), id),
            TableKind::Mbr => assert_eq!(
                table.mbr_signature.unwrap(),
                u32::from_str_radix(id.trim_start_matches("0x"), 16).unwrap()
            ),
        }
    }
}

#[test]
fn mbr_with_extended_and_logicals_matches_sfdisk() {
    check_against_sfdisk("mbr.raw", "mbr.json", "mbr");
    let dir = guestkit_fixtures::build("vol-parts");
    let table = read_partition_table(&FileSource::open(&dir.join("mbr.raw")).unwrap())
        .unwrap()
        .unwrap();
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    let names: Vec<_> = table
        .partitions
        .iter()
        .map(|p| p.partition_type.friendly_name())
        .collect();
    assert_eq!(
        names,
        [
            Some("Linux data"),
            Some("Linux swap"),
            Some("Linux LVM"),
            Some("Extended"),
            Some("Linux data"),
            Some("Microsoft basic data (NTFS/exFAT)")
        ]
    );
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);
}

#[test]
fn gpt_matches_sfdisk() {
    check_against_sfdisk("gpt.raw", "gpt.json", "gpt");
    let dir = guestkit_fixtures::build("vol-parts");
    let table = read_partition_table(&FileSource::open(&dir.join("gpt.raw")).unwrap())
        .unwrap()
        .unwrap();
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);
    let names: Vec<_> = table
        .partitions
        .iter()
        .map(|p| p.partition_type.friendly_name().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "BIOS boot",
            "EFI system",
            "Linux data",
            "Linux LVM",
            "Linux swap",
            "Microsoft basic data"
        ]
    );
}

#[test]
fn corrupt_primary_gpt_header_falls_back_to_backup() {
    for image in ["gpt-badprimary.raw", "gpt-badentries.raw"] {
        check_against_sfdisk(image, "gpt.json", "gpt");
        let dir = guestkit_fixtures::build("vol-parts");
        let table = read_partition_table(&FileSource::open(&dir.join(image)).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(table.warnings.len(), 1, "{image}");
        assert!(table.warnings[0].contains("backup"), "{:?}", table.warnings);
    }
}

#[test]
fn gpt_with_4096_byte_sectors_matches_sfdisk() {
    check_against_sfdisk("gpt-4k.raw", "gpt-4k.json", "gpt4k");
}

#[test]
fn disk_without_table_is_none() {
    let dir = guestkit_fixtures::build("vol-parts");
    let disk = FileSource::open(&dir.join("empty.raw")).unwrap();
    assert!(read_partition_table(&disk).unwrap().is_none());
}
