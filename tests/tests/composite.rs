//! The composite disk (`tests/fixtures/recipes/composite.sh`) read through the whole disk stack,
//! in every image format: format probe -> virtual disk -> GPT -> partitions -> LVM -> every
//! filesystem, each layer checked against what the tools that built it report (qemu-img, sfdisk,
//! LVM's reports, blkid, and the manifest of the source tree).

use guestkit_block::{BlockSource, Window};
use guestkit_formats::{Compression, Format, OpenOptions};
use guestkit_fs::{Error as FsError, FileKind, Filesystem, FsType};
use guestkit_volumes::lvm::{PhysicalVolume, VolumeGroup};
use guestkit_volumes::{PartitionType, TableKind, read_partition_table};
use guestkit_worker::local::{self, LocalJob};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture() -> PathBuf {
    guestkit_fixtures::build("composite")
}

fn read_json(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `blkid -p -o export` output the recipe wrote for one volume (DEVNAME dropped).
fn blkid(dir: &Path, volume: &str) -> BTreeMap<String, String> {
    let name = format!("{volume}.blkid");
    std::fs::read_to_string(dir.join(&name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k != "DEVNAME")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One manifest line: `path kind size mode uid gid nlink mtime sha256|target`.
#[derive(Clone)]
struct Entry {
    kind: String,
    size: u64,
    extra: String,
}

fn manifest(dir: &Path, name: &str) -> BTreeMap<String, Entry> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 9, "manifest line {l:?}");
            let entry = Entry {
                kind: f[1].to_owned(),
                size: f[2].parse().expect("size"),
                extra: f[8].to_owned(),
            };
            (f[0].to_owned(), entry)
        })
        .collect()
}

/// Bytes of one LVM report field such as `"4194304B"`.
fn bytes(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.trim_end_matches('B').parse().ok())
        .unwrap_or_else(|| panic!("not a byte count: {v}"))
}

/// sha256 of the whole virtual disk, read in odd-sized pieces so reads start and end inside
/// clusters, grains and blocks.
fn disk_sha256(disk: &dyn BlockSource) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let steps = [(4 << 20) - 511, 65_537, 1_000_003, 4_095];
    let (mut pos, mut i) = (0u64, 0);
    while pos < disk.size() {
        let n = (steps[i % steps.len()] as u64).min(disk.size() - pos) as usize;
        disk.read_at(pos, &mut buf[..n])
            .unwrap_or_else(|e| panic!("reading {n} bytes at {pos}: {e}"));
        hasher.update(&buf[..n]);
        pos += n as u64;
        i += 1;
    }
    hex::encode(hasher.finalize())
}

/// Type, label and UUID of the filesystem on `src` against blkid, then every entry of the
/// manifest: directory listings, kinds, sizes, contents and link targets.
fn check_filesystem(
    what: &str,
    src: Arc<dyn BlockSource>,
    ids: &BTreeMap<String, String>,
    tree: &BTreeMap<String, Entry>,
) {
    let fs_type = guestkit_fs::probe(&*src)
        .unwrap_or_else(|e| panic!("{what}: probe: {e}"))
        .unwrap_or_else(|| panic!("{what}: no filesystem recognised"));
    assert_eq!(
        Some(fs_type.blkid_name()),
        ids.get("TYPE").map(String::as_str),
        "{what}: type"
    );
    let fs = guestkit_fs::open(src).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    assert_eq!(fs.fs_type(), fs_type, "{what}");
    assert_eq!(fs.label(), ids.get("LABEL").cloned(), "{what}: label");
    assert_eq!(fs.uuid(), ids.get("UUID").cloned(), "{what}: uuid");
    check_tree(what, &*fs, tree);
}

fn check_tree(what: &str, fs: &dyn Filesystem, tree: &BTreeMap<String, Entry>) {
    let mut children: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([("/", BTreeSet::new())]);
    for (path, entry) in tree {
        let (parent, name) = path.rsplit_once('/').expect("absolute path");
        let parent = if parent.is_empty() { "/" } else { parent };
        children.entry(parent).or_default().insert(name);
        if entry.kind == "dir" {
            children.entry(path).or_default();
        }
    }
    for (dir, want) in &children {
        let listing = fs
            .read_dir(dir, 10_000)
            .unwrap_or_else(|e| panic!("{what}: read_dir {dir}: {e}"));
        assert!(!listing.truncated, "{what}: {dir}");
        // The root also holds what mkfs puts there (lost+found, NTFS's $ files).
        let got: BTreeSet<&str> = listing
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| !(*dir == "/" && (*n == "lost+found" || n.starts_with('$'))))
            .collect();
        assert_eq!(&got, want, "{what}: listing of {dir}");
    }

    let mut files = 0;
    for (path, want) in tree {
        let meta = fs
            .lstat(path)
            .unwrap_or_else(|e| panic!("{what}: lstat {path}: {e}"));
        match want.kind.as_str() {
            "dir" => assert_eq!(meta.kind, FileKind::Dir, "{what}: {path}"),
            "symlink" => {
                assert_eq!(meta.kind, FileKind::Symlink, "{what}: {path}");
                let target = fs
                    .read_link(path)
                    .unwrap_or_else(|e| panic!("{what}: read_link {path}: {e}"));
                assert_eq!(target, want.extra, "{what}: target of {path}");
            }
            _ => {
                assert_eq!(meta.kind, FileKind::File, "{what}: {path}");
                assert_eq!(meta.size, want.size, "{what}: size of {path}");
                let mut hasher = Sha256::new();
                let mut off = 0u64;
                loop {
                    let piece = fs
                        .read_file(path, off, 1 << 20)
                        .unwrap_or_else(|e| panic!("{what}: read_file {path} at {off}: {e}"));
                    if piece.is_empty() {
                        break;
                    }
                    off += piece.len() as u64;
                    hasher.update(&piece);
                }
                assert_eq!(off, want.size, "{what}: bytes read from {path}");
                assert_eq!(
                    hex::encode(hasher.finalize()),
                    want.extra,
                    "{what}: content of {path}"
                );
                files += 1;
            }
        }
    }
    assert!(files > 300, "{what}: only {files} files compared");
}

/// Opens `name` through the format probe and checks every layer of the disk inside it.
fn check_image(name: &str, format: Format) {
    let dir = fixture();
    let path = dir.join(name);
    let image = guestkit_formats::open(&path, &OpenOptions::default())
        .unwrap_or_else(|e| panic!("opening {name}: {e}"));
    assert_eq!(image.info().format, format, "{name}: probed format");
    let info = image.info().clone();

    // The virtual disk is what qemu-img converts the image to, byte for byte.
    let raw_size = std::fs::metadata(dir.join("disk.raw"))
        .expect("disk.raw")
        .len();
    assert_eq!(image.size(), raw_size, "{name}: virtual size");
    let want = std::fs::read_to_string(dir.join(format!("{name}.sha256"))).expect("sha256 oracle");
    assert_eq!(
        disk_sha256(&image),
        want.trim(),
        "{name}: virtual disk differs from qemu-img's"
    );
    let disk: Arc<dyn BlockSource> = Arc::new(image);

    // GPT, against sfdisk.
    let sfdisk = read_json(&dir, "disk.json");
    let sfdisk = &sfdisk["partitiontable"];
    let table = read_partition_table(&*disk)
        .unwrap_or_else(|e| panic!("{name}: partition table: {e}"))
        .unwrap_or_else(|| panic!("{name}: no partition table"));
    assert_eq!(table.kind, TableKind::Gpt, "{name}");
    assert!(table.warnings.is_empty(), "{name}: {:?}", table.warnings);
    let disk_ids = blkid(&dir, "disk");
    // GUIDs are compared ignoring case: blkid prints them lower case, sfdisk upper case.
    assert_eq!(
        table.disk_guid.map(|g| g.to_string().to_lowercase()),
        disk_ids.get("PTUUID").cloned(),
        "{name}: disk GUID"
    );
    let want_parts = sfdisk["partitions"].as_array().expect("partitions");
    assert_eq!(
        table.partitions.len(),
        want_parts.len(),
        "{name}: partitions"
    );
    for (got, want) in table.partitions.iter().zip(want_parts) {
        let n = got.number;
        assert_eq!(
            want["node"].as_str().map(|s| s.ends_with(&n.to_string())),
            Some(true),
            "{name}: p{n}"
        );
        assert_eq!(
            got.start_bytes,
            want["start"].as_u64().unwrap() * 512,
            "{name}: start of p{n}"
        );
        assert_eq!(
            got.size_bytes,
            want["size"].as_u64().unwrap() * 512,
            "{name}: size of p{n}"
        );
        let PartitionType::Gpt(t) = got.partition_type else {
            panic!("{name}: p{n} has an MBR type");
        };
        assert_eq!(
            t.to_string().to_uppercase(),
            want["type"].as_str().unwrap(),
            "{name}: type of p{n}"
        );
        assert_eq!(
            got.name.as_deref(),
            want["name"].as_str(),
            "{name}: name of p{n}"
        );
        assert_eq!(
            got.partition_guid.map(|g| g.to_string().to_uppercase()),
            want["uuid"].as_str().map(String::from),
            "{name}: GUID of p{n}"
        );
    }
    let part = |n: u32| -> Arc<dyn BlockSource> {
        let p = table.get(n).unwrap_or_else(|| panic!("{name}: no p{n}"));
        Arc::new(Window::new(disk.clone(), p.start_bytes, p.size_bytes).expect("partition window"))
    };

    let tree = manifest(&dir, "tree.manifest");
    let fat_tree = manifest(&dir, "tree-fat.manifest");
    let ext4_tree = if name == "overlay.qcow2" {
        manifest(&dir, "tree-overlay.manifest")
    } else {
        tree.clone()
    };
    check_filesystem(
        &format!("{name} p1"),
        part(1),
        &blkid(&dir, "p1"),
        &fat_tree,
    );
    check_filesystem(
        &format!("{name} p2"),
        part(2),
        &blkid(&dir, "p2"),
        &ext4_tree,
    );
    check_filesystem(&format!("{name} p4"), part(4), &blkid(&dir, "p4"), &tree);
    check_filesystem(&format!("{name} p5"), part(5), &blkid(&dir, "p5"), &tree);

    // p3: the LVM PV, its VG and LVs, against LVM's reports.
    let p3_ids = blkid(&dir, "p3");
    assert_eq!(
        guestkit_fs::probe(&*part(3))
            .unwrap()
            .map(FsType::blkid_name),
        p3_ids.get("TYPE").map(String::as_str),
        "{name}: p3"
    );
    let pv = PhysicalVolume::probe(part(3))
        .unwrap_or_else(|e| panic!("{name}: PV label: {e}"))
        .unwrap_or_else(|| panic!("{name}: p3 has no PV label"));
    assert_eq!(Some(&pv.uuid), p3_ids.get("UUID"), "{name}: PV UUID");
    let pvs = read_json(&dir, "pvs.json");
    assert_eq!(
        pvs["report"][0]["pv"][0]["pv_uuid"],
        pv.uuid.as_str(),
        "{name}"
    );
    let vg = VolumeGroup::assemble(vec![pv]).unwrap_or_else(|e| panic!("{name}: VG: {e}"));
    let vgs = read_json(&dir, "vgs.json");
    let want_vg = &vgs["report"][0]["vg"][0];
    assert_eq!(want_vg["vg_name"], vg.name.as_str(), "{name}");
    assert_eq!(want_vg["vg_uuid"], vg.uuid.as_str(), "{name}");
    assert_eq!(bytes(&want_vg["vg_extent_size"]), vg.extent_size, "{name}");
    assert!(vg.missing_pvs().is_empty(), "{name}");
    let lvs = read_json(&dir, "lvs.json");
    let want_lvs = lvs["report"][0]["seg"].as_array().expect("lvs");
    let mut got_lvs: Vec<&str> = vg
        .logical_volumes()
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    got_lvs.sort();
    let mut names: Vec<&str> = want_lvs
        .iter()
        .map(|s| s["lv_name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(got_lvs, names, "{name}: LVs");
    for want in want_lvs {
        let lv_name = want["lv_name"].as_str().unwrap();
        let lv = vg.lv(lv_name).unwrap();
        assert_eq!(
            lv.uuid,
            want["lv_uuid"].as_str().unwrap(),
            "{name}: {lv_name}"
        );
        assert_eq!(lv.size_bytes, bytes(&want["lv_size"]), "{name}: {lv_name}");
    }
    let lv = |lv_name: &str| -> Arc<dyn BlockSource> {
        Arc::new(
            vg.open_lv(lv_name)
                .unwrap_or_else(|e| panic!("{name}: LV {lv_name}: {e}")),
        )
    };
    check_filesystem(
        &format!("{name} vgcomp/root"),
        lv("root"),
        &blkid(&dir, "lv-root"),
        &tree,
    );
    // Swap space is recognised and refused, not read.
    let swap = lv("swap");
    let swap_type = guestkit_fs::probe(&*swap).unwrap().map(FsType::blkid_name);
    assert_eq!(
        swap_type,
        blkid(&dir, "lv-swap").get("TYPE").map(String::as_str),
        "{name}"
    );
    assert!(
        matches!(guestkit_fs::open(swap), Err(FsError::Unsupported(_))),
        "{name}"
    );

    // What the container declares.
    match name {
        "overlay.qcow2" => {
            assert_eq!(info.backing_chain.len(), 1, "{name}");
            assert!(info.backing_chain[0].ends_with("qcow2.qcow2"), "{name}");
        }
        "qcow2-zlib.qcow2" | "vmdk-stream.vmdk" => {
            assert_eq!(info.compression, vec![Compression::Deflate], "{name}")
        }
        "qcow2-zstd.qcow2" => assert_eq!(info.compression, vec![Compression::Zstd], "{name}"),
        _ => assert!(info.backing_chain.is_empty(), "{name}"),
    }
}

macro_rules! images {
    ($($test:ident => $file:literal, $format:ident;)*) => {
        $(
            #[test]
            fn $test() {
                check_image($file, Format::$format);
            }
        )*

        /// Every image the recipe wrote is one of the above.
        #[test]
        fn every_image_of_the_fixture_is_checked() {
            let listed: BTreeSet<&str> = [$($file),*].into();
            let written: BTreeSet<String> = std::fs::read_dir(fixture())
                .expect("fixture dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".sha256").map(String::from))
                .collect();
            assert_eq!(written, listed.iter().map(|s| s.to_string()).collect(), "images");
        }
    };
}

images! {
    raw => "disk.raw", Raw;
    qcow2 => "qcow2.qcow2", Qcow2;
    qcow2_zlib => "qcow2-zlib.qcow2", Qcow2;
    qcow2_zstd => "qcow2-zstd.qcow2", Qcow2;
    qcow2_overlay => "overlay.qcow2", Qcow2;
    vmdk_monolithic_sparse => "vmdk-sparse.vmdk", Vmdk;
    vmdk_monolithic_flat => "vmdk-flat.vmdk", Vmdk;
    vmdk_two_gb_sparse => "vmdk-2gsparse.vmdk", Vmdk;
    vmdk_stream_optimized => "vmdk-stream.vmdk", Vmdk;
    vdi => "disk.vdi", Vdi;
    vhdx => "disk.vhdx", Vhdx;
    vpc_dynamic => "vpc-dynamic.vhd", Vhd;
    vpc_fixed => "vpc-fixed.vhd", Vhd;
}

async fn run_disktool(operation: &str, payload: Value, image: &Path) -> Value {
    let job = LocalJob {
        operation: Some(operation.into()),
        payload,
        images: vec![image.to_path_buf()],
        handler_file: Some(guestkit_fixtures::component("disktool", &[])),
        ..LocalJob::default()
    };
    let (handler, report) = local::run(&guestkit_tests::sandbox(), &job)
        .await
        .expect("run");
    let doc = local::report_json(&handler, &report);
    assert_eq!(doc["status"], "succeeded", "{operation}: {doc}");
    doc["output"].clone()
}

/// The same disk as a handler sees it through the WIT `disk` interface: the overlay image (so
/// the backing file is resolved by the grant), its volumes with their filesystem identities,
/// and whole trees walked on the ext4 partition and on the XFS logical volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_every_volume_and_file_of_the_overlay_image() {
    let dir = fixture();
    let image = dir.join("overlay.qcow2");
    let out = run_disktool("disk.volumes", json!({}), &image).await;
    assert_eq!(out["format"], "qcow2");
    assert_eq!(out["backing_depth"], 1);
    let volumes = out["volumes"].as_array().expect("volumes");
    let ids: Vec<&str> = volumes.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "disk",
            "p1",
            "p2",
            "p3",
            "p4",
            "p5",
            "lvm/vgcomp/swap",
            "lvm/vgcomp/root"
        ],
        "{out}"
    );
    for v in volumes {
        let id = v["id"].as_str().unwrap();
        let oracle = match id {
            "disk" => continue,
            "lvm/vgcomp/swap" => "lv-swap",
            "lvm/vgcomp/root" => "lv-root",
            part => part,
        };
        let want = blkid(&dir, oracle);
        assert_eq!(
            v["fs_type"].as_str(),
            want.get("TYPE").map(String::as_str),
            "{id}"
        );
        if want["TYPE"] != "swap" && want["TYPE"] != "LVM2_member" {
            assert_eq!(
                v["fs_label"].as_str(),
                want.get("LABEL").map(String::as_str),
                "{id}"
            );
            assert_eq!(
                v["fs_uuid"].as_str(),
                want.get("UUID").map(String::as_str),
                "{id}"
            );
        }
    }

    for (volume, manifest_name) in [
        ("p2", "tree-overlay.manifest"),
        ("lvm/vgcomp/root", "tree.manifest"),
    ] {
        let seen = run_disktool("disk.walk", json!({"volume": volume}), &image).await;
        let tree = manifest(&dir, manifest_name);
        let mut files = 0;
        for (path, want) in &tree {
            let got = &seen[path.as_str()];
            assert!(got.is_object(), "{volume}: {path} missing");
            match want.kind.as_str() {
                "file" => {
                    assert_eq!(got["kind"], "file", "{volume}: {path}");
                    assert_eq!(got["size"], want.size, "{volume}: {path}");
                    assert_eq!(got["sha256"], want.extra.as_str(), "{volume}: {path}");
                    files += 1;
                }
                "symlink" => assert_eq!(got["target"], want.extra.as_str(), "{volume}: {path}"),
                kind => assert_eq!(got["kind"], kind, "{volume}: {path}"),
            }
        }
        assert!(files > 300, "{volume}: only {files} files compared");
    }
}
