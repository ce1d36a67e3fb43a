//! The `disk` and `checksum` WIT interfaces end to end: a real component (tests/handlers/
//! disktool) reads real images built by real tools, through the host's disk stack.

use guestkit_worker::local::{self, LocalJob};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn disktool() -> PathBuf {
    guestkit_fixtures::component("disktool", &[])
}

async fn run(operation: &str, payload: Value, images: &[&Path]) -> Value {
    let job = LocalJob {
        operation: Some(operation.into()),
        payload,
        images: images.iter().map(|p| p.to_path_buf()).collect(),
        handler_file: Some(disktool()),
        ..LocalJob::default()
    };
    let (handler, report) = local::run(&guestkit_tests::sandbox(), &job)
        .await
        .expect("run");
    let doc = local::report_json(&handler, &report);
    assert_eq!(doc["status"], "succeeded", "{operation}: {doc}");
    doc
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// `path kind size mode uid gid nlink mtime sha256|target` lines of the recipe's manifest.
fn manifest(path: &Path) -> BTreeMap<String, Vec<String>> {
    std::fs::read_to_string(path)
        .expect("manifest")
        .lines()
        .map(|l| {
            let f: Vec<String> = l.split('\t').map(String::from).collect();
            (f[0].clone(), f)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_read_through_each_filesystem_equal_the_source_tree() {
    let dir = guestkit_fixtures::build("fs-images");
    let tree = manifest(&dir.join("tree.manifest"));
    for fs in ["ext4", "xfs", "btrfs", "ntfs"] {
        let image = dir.join(format!("{fs}.img"));
        let doc = run("disk.walk", json!({"volume": "disk"}), &[&image]).await;
        let seen = doc["output"].as_object().unwrap();
        let mut checked = 0;
        for (path, want) in &tree {
            let got = &seen[path.as_str()];
            assert!(got.is_object(), "{fs}: {path} missing");
            let kind = match want[1].as_str() {
                "dir" => "dir",
                "symlink" => "symlink",
                _ => "file",
            };
            assert_eq!(got["kind"], kind, "{fs}: {path}");
            match kind {
                "file" => {
                    assert_eq!(got["sha256"], want[8].as_str(), "{fs}: {path}");
                    assert_eq!(got["size"].to_string(), want[2], "{fs}: {path}");
                    checked += 1;
                }
                "symlink" => assert_eq!(got["target"], want[8].as_str(), "{fs}: {path}"),
                _ => {}
            }
        }
        assert!(checked > 300, "{fs}: only {checked} files compared");
        assert!(doc["usage"]["disk_bytes_read"].as_u64().unwrap() > 3 << 20);
    }
}

/// `list-btrfs-subvolumes` gives what `btrfs inspect-internal dump-tree` says, and each
/// subvolume opened by that path through `open-btrfs-subvolume` holds the tree it was made from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_subvolumes_are_listed_and_opened_by_path() {
    let dir = guestkit_fixtures::build("fs-btrfs-subvol");
    let image = dir.join("btrfs-subvol.img");
    let doc = run(
        "disk.btrfs-subvolumes",
        json!({"volume": "disk"}),
        &[&image],
    )
    .await;
    let got = doc["output"]["subvolumes"].as_array().unwrap();
    let oracle = std::fs::read_to_string(dir.join("subvolumes.expected")).unwrap();
    let oracle: Vec<Vec<&str>> = oracle.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(got.len(), oracle.len(), "{doc}");
    for (sv, want) in got.iter().zip(&oracle) {
        let seen = (
            sv["id"].to_string(),
            sv["path"].as_str().unwrap(),
            sv["parent_id"].to_string(),
            sv["default"].as_bool().unwrap(),
            sv["read_only"].as_bool().unwrap(),
        );
        let want_row = (
            want[0].to_owned(),
            want[1],
            want[2].to_owned(),
            want[3] == "1",
            want[4] == "1",
        );
        assert_eq!(seen, want_row);
        let tree = manifest(&dir.join(format!("{}.manifest", want[1].replace('/', "_"))));
        let files = sv["files"].as_object().unwrap();
        let names: Vec<&String> = files.keys().collect();
        assert_eq!(names, tree.keys().collect::<Vec<_>>(), "{}", want[1]);
        for (path, w) in &tree {
            if w[1] == "file" {
                assert_eq!(files[path]["sha256"], w[8].as_str(), "{}: {path}", want[1]);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_partitions_and_logical_volumes_are_listed() {
    let parts = guestkit_fixtures::build("vol-parts");
    let doc = run("disk.volumes", json!({}), &[&parts.join("gpt.raw")]).await;
    let out = &doc["output"];
    assert_eq!(out["format"], "raw");
    let sfdisk: Value =
        serde_json::from_str(&std::fs::read_to_string(parts.join("gpt.json")).unwrap()).unwrap();
    let table = &sfdisk["partitiontable"];
    let volumes = out["volumes"].as_array().unwrap();
    assert_eq!(volumes[0]["id"], "disk");
    for (i, p) in table["partitions"].as_array().unwrap().iter().enumerate() {
        let v = &volumes[i + 1];
        assert_eq!(v["id"], format!("p{}", i + 1));
        assert_eq!(v["partition_table"], "gpt");
        assert_eq!(
            v["size"].as_u64().unwrap(),
            p["size"].as_u64().unwrap() * 512,
            "{v}"
        );
        assert_eq!(
            v["partition_type"].as_str().unwrap().to_uppercase(),
            p["type"].as_str().unwrap().to_uppercase()
        );
        if let Some(name) = p["name"].as_str() {
            assert_eq!(v["partition_label"], name);
        }
    }

    // A whole-disk PV with one VG holding one linear LV.
    let lvm = guestkit_fixtures::build("vol-lvm");
    let doc = run("disk.volumes", json!({}), &[&lvm.join("pv3.raw")]).await;
    let ids: Vec<&str> = doc["output"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"lvm/vgother/solo"), "{ids:?}");
    assert_eq!(doc["output"]["volumes"][0]["fs_type"], "LVM2_member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qcow2_image_reads_like_its_raw_source_and_checksums_match_the_tools() {
    let dir = guestkit_fixtures::build("fs-images");
    let tmp = tempfile::tempdir().unwrap();
    let qcow2 = tmp.path().join("ext4.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-q", "-c", "-O", "qcow2"])
        .arg(dir.join("ext4.img"))
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(status.success());
    let doc = run(
        "disk.read",
        json!({"volume": "disk", "path": "/etc/os-release"}),
        &[&qcow2],
    )
    .await;
    assert_eq!(doc["output"]["fs_type"], "ext4");
    assert_eq!(doc["output"]["label"], "lbl-ext4");
    assert!(
        doc["output"]["text"]
            .as_str()
            .unwrap()
            .contains("Fixture Linux")
    );
    let vols = run("disk.volumes", json!({}), &[&qcow2]).await;
    assert_eq!(vols["output"]["format"], "qcow2");

    // checksum.image-file is the checksum of the file on the host; checksum.file of a file
    // inside the filesystem equals sha256sum of the source file.
    let doc = run(
        "disk.checksum",
        json!({"volume": "disk", "path": "/big.bin", "algorithm": "sha256"}),
        &[&qcow2],
    )
    .await;
    assert_eq!(doc["output"]["image"], sha256sum(&qcow2));
    let tree = manifest(&dir.join("tree.manifest"));
    assert_eq!(doc["output"]["file"], tree["/big.bin"][8].as_str());
    for (algo, tool) in [
        ("md5", "md5sum"),
        ("sha1", "sha1sum"),
        ("sha512", "sha512sum"),
    ] {
        let doc = run("disk.checksum", json!({"algorithm": algo}), &[&qcow2]).await;
        let out = Command::new(tool).arg(&qcow2).output().unwrap();
        let want = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(doc["output"]["image"], want, "{algo}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_of_the_disk_api_gets_errors_not_data() {
    let dir = guestkit_fixtures::build("fs-images");
    let doc = run(
        "disk.abuse",
        json!({"volume": "disk"}),
        &[&dir.join("ext4.img")],
    )
    .await;
    let out = doc["output"].as_object().unwrap();
    for (what, error) in out {
        assert!(error.is_string(), "{what} was allowed: {doc}");
    }
    assert!(
        out["ungranted"]
            .as_str()
            .unwrap()
            .contains("grants no image")
    );
    assert!(out["huge_read"].as_str().unwrap().contains("read length"));
}
