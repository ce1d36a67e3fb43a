//! `guestkit.inspect` end to end: the real daemon, real HTTP, guest images built by real tools
//! (debootstrap, rpmbuild + rpm, pacman), each field compared with what those tools reported
//! when they built the image (`expected.json` beside it).

mod common;

use common::{Daemon, Http, Opts};
use serde_json::{Value, json};
use std::path::Path;

fn expected(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// A daemon whose image root is the fixture directory.
fn daemon(fixtures: &Path, data: &Path) -> Daemon {
    Daemon::start(
        data,
        &Opts {
            args: vec!["--image-root".into(), fixtures.display().to_string()],
            handlers: vec![],
        },
    )
}

/// Runs `inspect` on `images` and returns the whole result document; a successful output is
/// checked against the published schema.
async fn inspect(http: &Http, images: &[&str], payload: Value) -> Value {
    let id = http
        .submit(&json!({"operation": "inspect", "images": images, "payload": payload}))
        .await;
    let result = http.result(&id).await;
    if result["status"] == "succeeded" {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/schemas/inspect-output.schema.json"
        );
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        conforms(&result["output"], &schema, "output");
    }
    result
}

/// A small JSON Schema check, enough for the published one: `type`, `const`, `enum`,
/// `properties`/`required`/`additionalProperties`, `items` and `oneOf`.
fn conforms(value: &Value, schema: &Value, at: &str) {
    if let Some(alternatives) = schema["oneOf"].as_array() {
        let fits = |s: &Value| match s["type"].as_str() {
            Some("null") => value.is_null(),
            Some("object") => value.is_object(),
            _ => true,
        };
        let chosen = alternatives.iter().find(|s| fits(s));
        let chosen = chosen.unwrap_or_else(|| panic!("{at}: {value} fits no alternative"));
        return conforms(value, chosen, at);
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    assert!(
        allowed.is_empty()
            || allowed.contains(&kind)
            || (kind == "integer" && allowed.contains(&"number")),
        "{at}: {kind} is not {allowed:?}"
    );
    if let Some(c) = schema.get("const") {
        assert_eq!(value, c, "{at}");
    }
    if let Some(options) = schema["enum"].as_array() {
        assert!(options.contains(value), "{at}: {value} not in {options:?}");
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => conforms(v, sub, &format!("{at}.{k}")),
                    None if schema["additionalProperties"] == false => {
                        panic!("{at}: {k} is not in the schema")
                    }
                    None if schema["additionalProperties"].is_object() => {
                        conforms(v, &schema["additionalProperties"], &format!("{at}.{k}"))
                    }
                    None => {}
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                assert!(map.contains_key(r), "{at}: required {r} is missing");
            }
        }
        Value::Array(items) if schema.get("items").is_some() => {
            for (i, item) in items.iter().enumerate() {
                conforms(item, &schema["items"], &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

/// The one OS found with its root on `image`.
fn os_on<'a>(output: &'a Value, image: &str) -> &'a Value {
    let found: Vec<&Value> = output["operating_systems"]
        .as_array()
        .expect("operating_systems")
        .iter()
        .filter(|os| os["root"]["image"] == image)
        .collect();
    assert_eq!(found.len(), 1, "one OS root on {image}: {output:#}");
    found[0]
}

/// Applications as comparable tuples, sorted.
fn apps(list: &Value) -> Vec<(String, u64, String, String, String, String, String)> {
    let s = |a: &Value, k: &str| a[k].as_str().unwrap_or_default().to_string();
    let mut out: Vec<_> = list
        .as_array()
        .expect("applications")
        .iter()
        .map(|a| {
            (
                s(a, "name"),
                a["epoch"].as_u64().expect("epoch"),
                s(a, "version"),
                s(a, "release"),
                s(a, "arch"),
                s(a, "summary"),
                s(a, "url"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Debian's architecture names as the ELF machine names libguestfs reports.
fn elf_arch(dpkg: &str) -> &str {
    match dpkg {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i386",
        "armhf" | "armel" => "arm",
        "ppc64el" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => panic!("unexpected dpkg architecture {other}"),
    }
}

fn mountpoint<'a>(os: &'a Value, path: &str) -> &'a Value {
    os["mountpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountpoint"] == path)
        .unwrap_or_else(|| panic!("no mountpoint {path}: {:#}", os["mountpoints"]))
}

fn check_debian(os: &Value, exp: &Value, image: &str) {
    let ctx = format!("{image}: {os:#}");
    assert_eq!(os["type"], "linux", "{ctx}");
    assert_eq!(os["distro"], exp["distro"], "{ctx}");
    // libguestfs leaves Debian's os-release (it has no minor version) for /etc/debian_version,
    // whose first line becomes the product name.
    assert_eq!(os["product_name"], exp["debian_version"], "{ctx}");
    assert_eq!(os["major_version"], exp["major_version"], "{ctx}");
    assert_eq!(os["minor_version"], exp["minor_version"], "{ctx}");
    assert_eq!(
        os["arch"],
        elf_arch(exp["dpkg_architecture"].as_str().unwrap()),
        "{ctx}"
    );
    assert_eq!(os["hostname"], exp["hostname"], "{ctx}");
    assert_eq!(os["machine_id"], exp["machine_id"], "{ctx}");
    assert_eq!(os["package_format"], "deb", "{ctx}");
    assert_eq!(os["package_management"], "apt", "{ctx}");
    assert_eq!(
        os["package_database"],
        json!({"format": "dpkg", "path": "/var/lib/dpkg/status"})
    );
    assert_eq!(
        os["root"],
        json!({"image": image, "volume": "p2", "subvolume": null})
    );
    assert_eq!(os["warnings"], json!([]), "{ctx}");

    // fstab: UUID=, LABEL= and PARTUUID= resolved to this image's partitions.
    let loc = |v: &str| json!({"image": image, "volume": v, "subvolume": null});
    let root = mountpoint(os, "/");
    assert_eq!(
        root["spec"],
        format!("UUID={}", exp["root_uuid"].as_str().unwrap())
    );
    assert_eq!(root["location"], loc("p2"));
    assert_eq!(mountpoint(os, "/boot")["location"], loc("p3"));
    assert_eq!(mountpoint(os, "/boot/efi")["location"], loc("p1"));
    // Swap and pseudo filesystems (`proc`) are not mountpoints, as in libguestfs.
    let order: Vec<&str> = os["mountpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountpoint"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["/", "/boot", "/boot/efi"]);
    let fs: Vec<(String, String, String)> = os["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["mountpoint"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
                f["label"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = |m: &str, t: &str, l: &str| (m.to_string(), t.to_string(), l.to_string());
    assert_eq!(
        fs,
        [
            want("/", "ext4", "debroot"),
            want("/boot", "ext4", "debboot"),
            want("/boot/efi", "vfat", "DEBEFI")
        ]
    );
    assert!(
        os["filesystems"][0]["uuid"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(exp["root_uuid"].as_str().unwrap())
    );
    assert!(
        os["filesystems"][1]["uuid"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(exp["boot_uuid"].as_str().unwrap())
    );

    // Every installed package, every field, as dpkg-query reported it.
    assert_eq!(
        apps(&os["applications"]),
        apps(&exp["applications"]),
        "{image}"
    );
    assert_eq!(os["users"], exp["users"], "{image}");
    assert_eq!(os["groups"], exp["groups"], "{image}");
    assert_eq!(os["services"]["systemd"], exp["systemd"], "{image}");
    assert_eq!(os["services"]["sysv"], exp["sysv"], "{image}");

    let ifaces: Vec<Value> = os["network"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["source"], "/etc/network/interfaces");
            json!({"name": i["name"], "family": i["family"], "method": i["method"],
                   "addresses": i["addresses"], "gateway": i["gateway"],
                   "start_on_boot": i["start_on_boot"]})
        })
        .collect();
    assert_eq!(Value::from(ifaces), exp["interfaces"], "{image}");
    assert_eq!(os["network"]["nameservers"], exp["nameservers"]);

    // The kernel image is on /boot, its own filesystem: found through the fstab mount.
    let kver = exp["kernel"].as_str().unwrap();
    assert_eq!(
        os["kernels"],
        json!([{"version": kver, "path": format!("/boot/vmlinuz-{kver}"),
                "modules_path": format!("/lib/modules/{kver}")}])
    );
    assert_eq!(
        os["cloud_init"],
        json!({"installed": true, "disabled": false, "version": null})
    );
}

fn check_image_filesystems(output: &Value, image: &str, format: &str) {
    let img = output["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == image)
        .unwrap_or_else(|| panic!("image {image} in {output:#}"));
    assert_eq!(img["format"], format);
    assert!(img["filesystems"].as_array().unwrap().len() >= 2, "{img:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_in_raw_qcow2_and_vmdk() {
    let fixtures = guestkit_fixtures::build("guest-debian");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path());
    let http = daemon.http();

    // One job granted the same disk three times, in three formats: three OS roots, each with
    // its fstab resolved on its own image although the UUIDs are the same on all three.
    let images = ["debian.raw", "debian.qcow2", "debian.vmdk"];
    let result = inspect(&http, &images, json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let output = &result["output"];
    assert_eq!(output["schema_version"], "1.0");
    assert_eq!(output["operating_systems"].as_array().unwrap().len(), 3);
    for (image, format) in images.iter().zip(["raw", "qcow2", "vmdk"]) {
        check_image_filesystems(output, image, format);
        check_debian(os_on(output, image), &exp, image);
    }

    // A subset of the images and of the sections.
    let result = inspect(
        &http,
        &images,
        json!({"images": ["debian.qcow2"], "include": ["users", "kernels"]}),
    )
    .await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let output = &result["output"];
    assert_eq!(output["images"].as_array().unwrap().len(), 1);
    let os = os_on(output, "debian.qcow2");
    assert_eq!(os["users"], exp["users"]);
    assert!(os["kernels"].is_array());
    for absent in [
        "applications",
        "services",
        "groups",
        "network",
        "cloud_init",
    ] {
        assert!(
            os.get(absent).is_none(),
            "{absent} was not asked for: {os:#}"
        );
    }
    assert_eq!(os["distro"], "debian");

    // Unknown payload fields, sections and images are invalid input.
    for payload in [
        json!({"imagez": []}),
        json!({"include": ["everything"]}),
        json!({"images": ["other.img"]}),
    ] {
        let result = inspect(&http, &["debian.raw"], payload.clone()).await;
        assert_eq!(result["status"], "failed", "{payload}: {result:#}");
        assert_eq!(
            result["error"]["code"], "invalid_input",
            "{payload}: {result:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_dpkg_database_gives_a_partial_list_and_a_warning() {
    let fixtures = guestkit_fixtures::build("guest-debian");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path());
    let http = daemon.http();
    let result = inspect(&http, &["debian-corrupt.raw"], json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let os = os_on(&result["output"], "debian-corrupt.raw");
    assert_eq!(os["distro"], "debian");
    assert_eq!(os["root"]["volume"], "disk");
    let warnings = os["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("dpkg status")),
        "{warnings:?}"
    );
    let found = apps(&os["applications"]);
    let all = apps(&exp["applications"]);
    assert!(
        !found.is_empty() && found.len() < all.len(),
        "{} of {}",
        found.len(),
        all.len()
    );
    for app in &found {
        assert!(all.contains(app), "{app:?} is not an installed package");
    }
}

/// The fields of `actual`'s items that `expected`'s items name, for list comparisons.
fn project(actual: &Value, expected: &Value) -> Value {
    let keys: Vec<String> = expected
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    Value::from(
        actual
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                keys.iter()
                    .map(|k| (k.clone(), item[k].clone()))
                    .collect::<serde_json::Map<_, _>>()
            })
            .collect::<Vec<_>>(),
    )
}

fn check_rpm(os: &Value, exp: &Value, image: &str, database: Value) {
    let ctx = format!("{image}: {os:#}");
    assert_eq!(os["type"], "linux", "{ctx}");
    assert_eq!(os["distro"], exp["distro"], "{ctx}");
    assert_eq!(os["product_name"], exp["product_name"], "{ctx}");
    assert_eq!(os["major_version"], exp["major_version"], "{ctx}");
    assert_eq!(os["minor_version"], exp["minor_version"], "{ctx}");
    assert_eq!(os["arch"], exp["arch"], "{ctx}");
    assert_eq!(os["hostname"], exp["hostname"], "{ctx}");
    assert_eq!(os["machine_id"], exp["machine_id"], "{ctx}");
    assert_eq!(os["package_format"], "rpm", "{ctx}");
    assert_eq!(os["package_management"], "dnf", "{ctx}");
    assert_eq!(os["package_database"], database, "{ctx}");
    assert_eq!(os["warnings"], json!([]), "{ctx}");
    let loc = |v: &str| json!({"image": image, "volume": v, "subvolume": null});
    assert_eq!(os["root"], loc("lvm/rl/root"));

    // /dev/mapper/VG-LV, UUID= and /dev/VG/LV, each mounted from its own XFS.
    assert_eq!(mountpoint(os, "/")["location"], loc("lvm/rl/root"));
    assert_eq!(mountpoint(os, "/boot")["location"], loc("p1"));
    assert_eq!(mountpoint(os, "/home")["location"], loc("lvm/rl/home"));
    let fs: Vec<(Value, Value, Value)> = os["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["mountpoint"].clone(),
                f["location"]["volume"].clone(),
                f["type"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fs,
        [
            (json!("/"), json!("lvm/rl/root"), json!("xfs")),
            (json!("/boot"), json!("p1"), json!("xfs")),
            (json!("/home"), json!("lvm/rl/home"), json!("xfs")),
        ]
    );
    assert_eq!(
        os["filesystems"][1]["uuid"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        exp["boot_uuid"]
    );

    assert_eq!(
        apps(&os["applications"]),
        apps(&exp["applications"]),
        "{image}"
    );
    assert_eq!(os["users"], exp["users"], "{image}");
    assert_eq!(os["groups"], exp["groups"], "{image}");
    assert_eq!(os["services"]["systemd"], exp["systemd"], "{image}");
    assert_eq!(os["services"]["sysv"], json!([]), "{image}");
    assert_eq!(
        project(&os["network"]["interfaces"], &exp["interfaces"]),
        exp["interfaces"],
        "{image}"
    );
    assert_eq!(os["network"]["nameservers"], exp["nameservers"]);
    let kver = exp["kernel"].as_str().unwrap();
    assert_eq!(
        os["kernels"],
        json!([{"version": kver, "path": format!("/boot/vmlinuz-{kver}"),
                "modules_path": format!("/lib/modules/{kver}")}])
    );
    assert_eq!(
        os["cloud_init"],
        json!({"installed": false, "disabled": false, "version": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_sqlite_and_berkeley_db_on_lvm_and_xfs() {
    let fixtures = guestkit_fixtures::build("guest-rpm");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path());
    let http = daemon.http();
    let images = [
        "rpm.raw",
        "rpm.qcow2",
        "rpm.vmdk",
        "rpm-bdb.raw",
        "rpm-bdb.qcow2",
        "rpm-bdb.vmdk",
    ];
    let result = inspect(&http, &images, Value::Null).await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let output = &result["output"];
    assert_eq!(output["operating_systems"].as_array().unwrap().len(), 6);
    for image in images {
        let database = if image.starts_with("rpm-bdb") {
            json!({"format": "rpm-bdb", "path": "/var/lib/rpm/Packages"})
        } else {
            json!({"format": "rpm-sqlite", "path": "/var/lib/rpm/rpmdb.sqlite"})
        };
        check_rpm(os_on(output, image), &exp, image, database);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_rpmdb_gives_a_partial_list_and_a_warning() {
    let fixtures = guestkit_fixtures::build("guest-rpm");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path());
    let http = daemon.http();
    let result = inspect(
        &http,
        &["rpm-corrupt.raw"],
        json!({"include": ["applications"]}),
    )
    .await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let os = os_on(&result["output"], "rpm-corrupt.raw");
    assert_eq!(os["distro"], "rocky");
    let warnings = os["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("rpmdb.sqlite")),
        "{warnings:?}"
    );
    let found = apps(&os["applications"]);
    let all = apps(&exp["applications"]);
    assert!(
        !found.is_empty() && found.len() < all.len(),
        "{} of {}",
        found.len(),
        all.len()
    );
    for app in &found {
        assert!(all.contains(app), "{app:?} is not an installed package");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arch_with_pacman_on_btrfs_subvolumes() {
    let fixtures = guestkit_fixtures::build("guest-arch");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path());
    let http = daemon.http();
    let images = ["arch.raw", "arch.qcow2", "arch.vmdk"];
    let result = inspect(&http, &images, json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let output = &result["output"];
    for image in images {
        let os = os_on(output, image);
        let ctx = format!("{image}: {os:#}");
        assert_eq!(os["type"], "linux", "{ctx}");
        // os-release says ID=arch; libguestfs calls the distro "archlinux".
        assert_eq!(exp["distro"], "arch");
        assert_eq!(os["distro"], "archlinux", "{ctx}");
        assert_eq!(os["product_name"], exp["product_name"], "{ctx}");
        assert_eq!(
            (&os["major_version"], &os["minor_version"]),
            (&json!(0), &json!(0))
        );
        assert_eq!(os["arch"], exp["arch"], "{ctx}");
        assert_eq!(os["hostname"], exp["hostname"], "{ctx}");
        assert_eq!(os["machine_id"], exp["machine_id"], "{ctx}");
        assert_eq!(os["package_format"], "pacman", "{ctx}");
        assert_eq!(os["package_management"], "pacman", "{ctx}");
        assert_eq!(
            os["package_database"],
            json!({"format": "pacman", "path": "/var/lib/pacman/local"})
        );
        assert_eq!(os["warnings"], json!([]), "{ctx}");
        // The root is subvolume `@` of p2 (the top level holds no OS), and fstab's `subvol=`
        // and `subvolid=` lines map /home and /var/log to their subvolumes; the paths and ids
        // are what dump-tree showed the recipe.
        let subvol = |mp: &str| {
            let s = &exp["subvolumes"][mp];
            json!({"image": image, "volume": "p2", "subvolume": s["path"], "subvolume_id": s["id"]})
        };
        assert_eq!(os["root"], subvol("/"), "{ctx}");
        for mp in ["/", "/home", "/var/log"] {
            assert_eq!(mountpoint(os, mp)["location"], subvol(mp), "{mp} of {ctx}");
        }
        assert_eq!(
            mountpoint(os, "/boot")["location"],
            json!({"image": image, "volume": "p1", "subvolume": null})
        );
        let mounted: Vec<(&Value, &Value)> = os["filesystems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (&f["mountpoint"], &f["type"]))
            .collect();
        let (btrfs, vfat) = (json!("btrfs"), json!("vfat"));
        let at = ["/", "/boot", "/home", "/var/log"].map(|m| json!(m));
        assert_eq!(
            mounted,
            [
                (&at[0], &btrfs),
                (&at[1], &vfat),
                (&at[2], &btrfs),
                (&at[3], &btrfs)
            ],
            "{ctx}"
        );
        assert!(
            os["filesystems"][0]["uuid"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(exp["root_uuid"].as_str().unwrap())
        );
        assert_eq!(
            apps(&os["applications"]),
            apps(&exp["applications"]),
            "{image}"
        );
        assert_eq!(os["users"], exp["users"], "{image}");
        assert_eq!(os["groups"], exp["groups"], "{image}");
        assert_eq!(os["services"]["systemd"], exp["systemd"], "{image}");
        assert_eq!(
            project(&os["network"]["interfaces"], &exp["interfaces"]),
            exp["interfaces"],
            "{image}"
        );
        // resolv.conf points into /run, which an image does not have.
        assert_eq!(os["network"]["nameservers"], json!([]));
        let kver = exp["kernel"].as_str().unwrap();
        assert_eq!(
            os["kernels"],
            json!([{"version": kver, "path": "/boot/vmlinuz-linux",
                    "modules_path": format!("/lib/modules/{kver}")}])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_from_its_registry_hives() {
    let fixtures = guestkit_fixtures::build("guest-windows");
    let exp = expected(&fixtures);
    let data = tempfile::tempdir().unwrap();
    let daemon = daemon(&fixtures, data.path());
    let http = daemon.http();
    let images = ["disk.raw", "disk.qcow2", "disk.vmdk"];
    let result = inspect(&http, &images, json!({})).await;
    assert_eq!(result["status"], "succeeded", "{result:#}");
    let output = &result["output"];
    let disk = &exp["disk"];
    for image in images {
        let os = os_on(output, image);
        let ctx = format!("{image}: {os:#}");
        assert_eq!(os["type"], "windows", "{ctx}");
        assert_eq!(os["distro"], "windows", "{ctx}");
        for field in [
            "product_name",
            "product_variant",
            "major_version",
            "minor_version",
            "build",
            "hostname",
        ] {
            assert_eq!(os[field], exp[field], "{field} of {ctx}");
        }
        assert_eq!(
            os["windows_current_control_set"],
            exp["current_control_set"]
        );
        assert_eq!(os["arch"], disk["ntoskrnl_arch"], "{ctx}");
        assert_eq!(os["windows_systemroot"], disk["system_root_path"], "{ctx}");
        let volume = format!("p{}", disk["partition"]);
        let loc = json!({"image": image, "volume": volume, "subvolume": null});
        assert_eq!(os["root"], loc);
        assert_eq!(os["filesystems"][0]["type"], disk["filesystem"]);
        // Every `\DosDevices\X:` disk blob the registry holds, by letter; those the
        // recipe mapped to the NTFS partition resolve to it, the others (D:, a disk this image
        // is not) to null.
        let mapped = disk["drive_letters"].as_array().unwrap();
        let mut want = exp["drive_mappings"].clone();
        for (letter, m) in want.as_object_mut().unwrap() {
            m["location"] = if mapped.contains(&json!(letter)) {
                loc.clone()
            } else {
                Value::Null
            };
        }
        assert_eq!(os["drive_mappings"], want, "{ctx}");
        // libguestfs' one Windows mountpoint: the root as `/`, here named by its drive letter.
        assert_eq!(
            os["mountpoints"],
            json!([{"mountpoint": "/", "spec": format!("{}:", mapped[0].as_str().unwrap()),
                    "fs_type": disk["filesystem"], "options": "", "location": loc}]),
            "{ctx}"
        );
        let want_apps: Vec<Value> = exp["applications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                json!({"name": a["name"], "display_name": a["display_name"],
                       "version": a["version"].as_str().unwrap_or(""),
                       "publisher": a["publisher"].as_str().unwrap_or(""),
                       "install_path": a["install_location"].as_str().unwrap_or("")})
            })
            .collect();
        let mut want_apps = want_apps;
        want_apps.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let got_apps: Vec<Value> = os["applications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                json!({"name": a["name"], "display_name": a["display_name"],
                       "version": a["version"],
                       "publisher": a["publisher"].as_str().unwrap_or(""),
                       "install_path": a["install_path"].as_str().unwrap_or("")})
            })
            .collect();
        assert_eq!(got_apps, want_apps, "{image}");
        assert_eq!(os["warnings"], exp["warnings"], "{ctx}");
    }
}
