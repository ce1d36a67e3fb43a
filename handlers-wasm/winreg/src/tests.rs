//! Tests over hives built in memory (`testhive`), the fixture data's empty hive, and, when
//! `GUESTKIT_WINDOWS_FIXTURE` names the output of the `guest-windows` recipe, real hives written
//! by hivex, checked against the recipe's `expected.json`.

use std::path::PathBuf;

use crate::testhive::*;
use crate::*;

fn fixture_data() -> Option<PathBuf> {
    let dir = match std::env::var_os("GUESTKIT_FIXTURE_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixture-data"),
    };
    let dir = dir.join("windows");
    dir.is_dir().then_some(dir)
}

#[test]
fn facts_from_built_hives() {
    let facts = inspect_windows(&software_win10(), &system_gpt());
    assert_eq!(facts.warnings, Vec::<String>::new());
    assert_eq!(facts.product_name.as_deref(), Some("Windows 10 Pro"));
    assert_eq!(facts.product_variant.as_deref(), Some("Client"));
    assert_eq!(facts.edition.as_deref(), Some("Professional"));
    // The DWORDs win over CurrentVersion "6.3"; CurrentBuild is the fallback build.
    assert_eq!(
        (facts.major_version, facts.minor_version),
        (Some(10), Some(0))
    );
    assert_eq!(facts.build.as_deref(), Some("19045"));
    assert_eq!(facts.system_root.as_deref(), Some(r"C:\WINDOWS"));
    // Select\Current = 2 picks ControlSet002's names, not ControlSet001's.
    assert_eq!(facts.current_control_set.as_deref(), Some("ControlSet002"));
    assert_eq!(facts.hostname.as_deref(), Some("DESKTOP-GPT"));
    assert_eq!(facts.arch.as_deref(), Some("aarch64"));
    // D: (a string), E: (13 bytes), F: (a CD-ROM path) and the volume GUID name are skipped.
    assert_eq!(
        facts.drive_mappings.keys().collect::<Vec<_>>(),
        ["C", "G"],
        "{:?}",
        facts.drive_mappings
    );
    assert_eq!(
        facts.drive_mappings.get("C"),
        Some(&DriveMapping::Gpt {
            partition_guid: "12345678-9abc-def0-0123-456789abcdef".into()
        })
    );
    assert_eq!(
        facts.drive_mappings.get("G"),
        Some(&DriveMapping::Mbr {
            disk_signature: "7a3e91c4".into(),
            offset: 0x10_0000
        })
    );
    // 40 applications behind an ri index of li lists, in list order.
    assert_eq!(facts.applications.len(), 40);
    assert_eq!(facts.applications[0].name, "app00");
    assert_eq!(facts.applications[39].display_name, "App 39");
    assert_eq!(facts.applications[5].version.as_deref(), Some("1.0"));
    assert_eq!(facts.applications[5].publisher, None);

    let json = serde_json::to_value(&facts).unwrap();
    assert_eq!(json["drive_mappings"]["C"]["kind"], "gpt");
    assert_eq!(json["major_version"], 10);
    assert!(json["applications"][0]["install_location"].is_null());
}

#[test]
fn value_types_and_names() {
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let root = node(
        "ROOT",
        vec![
            ("", REG_SZ, sz("the default value")),
            ("Multi", REG_MULTI_SZ, {
                let mut m = sz("one");
                m.extend(sz("two"));
                m.extend([0, 0]);
                m
            }),
            (
                "Q",
                REG_QWORD,
                0x0102_0304_0506_0708u64.to_le_bytes().to_vec(),
            ),
            ("BigEndian", REG_DWORD_BE, vec![0, 0, 1, 2]),
            ("Expand", REG_EXPAND_SZ, sz("%SystemRoot%\\x")),
            ("Blob", REG_BINARY, vec![1, 2, 3]),
            ("Big", REG_BINARY, big.clone()),
            ("Wert \u{2713}", REG_SZ, sz("utf-16 name")),
            (
                "NoNul",
                REG_SZ,
                "abc".encode_utf16().flat_map(u16::to_le_bytes).collect(),
            ),
            ("ShortDword", REG_DWORD, vec![1, 2]),
        ],
        vec![
            node("Schl\u{fc}ssel \u{2713}", vec![], vec![]),
            node("Café", vec![], vec![]),
        ],
    );
    let bytes = hive(&root);
    let h = Hive::new(&bytes).unwrap();
    assert!(h.notes().is_empty(), "{:?}", h.notes());
    let r = h.root().unwrap();
    assert_eq!(r.name(), "ROOT");
    assert_eq!(h.security_descriptor(&r).unwrap(), vec![1, 0, 0x04, 0x80]);
    let get = |name: &str| h.value(&r, name).unwrap().unwrap();
    assert_eq!(h.value_string(&get("")).unwrap(), "the default value");
    assert_eq!(
        h.value_multi_string(&get("multi")).unwrap(),
        vec!["one".to_string(), "two".to_string()]
    );
    assert_eq!(h.value_qword(&get("Q")).unwrap(), 0x0102_0304_0506_0708);
    assert_eq!(h.value_dword(&get("BigEndian")).unwrap(), 0x0102);
    assert_eq!(
        h.value_data(&get("Expand")).unwrap(),
        ValueData::ExpandString("%SystemRoot%\\x".into())
    );
    assert_eq!(h.value_bytes(&get("Blob")).unwrap(), vec![1, 2, 3]);
    assert_eq!(h.value_bytes(&get("Big")).unwrap(), big);
    assert_eq!(
        h.value_string(&get("WERT \u{2713}")).unwrap(),
        "utf-16 name"
    );
    assert_eq!(h.value_string(&get("NoNul")).unwrap(), "abc");
    assert!(matches!(
        h.value_dword(&get("ShortDword")),
        Err(Error::BadData { .. })
    ));
    assert!(matches!(
        h.value_dword(&get("Blob")),
        Err(Error::WrongType { found: 3, .. })
    ));
    assert_eq!(h.values(&r).unwrap().len(), 10);
    assert_eq!(h.value(&r, "absent").unwrap(), None);

    let names: Vec<String> = h
        .subkeys(&r)
        .unwrap()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(names, ["Schl\u{fc}ssel \u{2713}", "Café"]);
    // Case-insensitive beyond ASCII, through a UTF-16 name and a Latin-1 one.
    assert!(h.subkey(&r, "SCHLÜSSEL \u{2713}").unwrap().is_some());
    assert!(h.open(&r, r"\CAFÉ").unwrap().is_some());
    assert!(h.open(&r, r"Café\missing").unwrap().is_none());
}

#[test]
fn minimal_hive_from_fixture_data() {
    let Some(dir) = fixture_data() else {
        eprintln!("fixture data not found (set GUESTKIT_FIXTURE_DATA); skipped");
        return;
    };
    let bytes = std::fs::read(dir.join("minimal-hive")).unwrap();
    let h = Hive::new(&bytes).unwrap();
    assert!(h.notes().is_empty(), "{:?}", h.notes());
    let root = h.root().unwrap();
    assert_eq!(h.subkeys(&root).unwrap(), vec![]);
    assert_eq!(h.values(&root).unwrap(), vec![]);
    let facts = inspect_windows(&bytes, &bytes);
    assert_eq!(facts.product_name, None);
    assert!(
        facts
            .warnings
            .iter()
            .any(|w| w.contains(r"Windows NT\CurrentVersion not found")),
        "{:?}",
        facts.warnings
    );
}

/// The real hives of the `guest-windows` fixture, written by hivexregedit, against the values
/// the recipe read back with hivexget.
#[test]
fn guest_windows_fixture() {
    let Some(dir) = std::env::var_os("GUESTKIT_WINDOWS_FIXTURE").map(PathBuf::from) else {
        eprintln!("GUESTKIT_WINDOWS_FIXTURE not set; skipped");
        return;
    };
    let software = std::fs::read(dir.join("SOFTWARE")).unwrap();
    let system = std::fs::read(dir.join("SYSTEM")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let facts = inspect_windows(&software, &system);
    let got = serde_json::to_value(&facts).unwrap();
    let mut want = expected.clone();
    want.as_object_mut().unwrap().remove("disk");
    assert_eq!(got, want);

    // Every key and value of the real hives reads without error.
    for bytes in [&software, &system] {
        let h = Hive::new(bytes).unwrap();
        let root = h.root().unwrap();
        let mut values = 0;
        let summary = h.walk(&root, WalkLimits::default(), |_, k| {
            for v in h.values(k).unwrap() {
                h.value_data(&v).unwrap();
                values += 1;
            }
            true
        });
        assert!(summary.errors.is_empty() && !summary.truncated && summary.revisits == 0);
        assert!(summary.keys > 5 && values > 5);
    }
}

#[test]
fn bad_headers() {
    assert_eq!(
        Hive::new(&[0; 100]).unwrap_err(),
        Error::TooShort { len: 100 }
    );
    let good = software_win10();
    let mut b = good.clone();
    b[0] = b'R';
    assert!(matches!(
        Hive::new(&b),
        Err(Error::BadSignature { offset: 0, .. })
    ));
    let mut b = good.clone();
    b[20] = 2;
    assert_eq!(
        Hive::new(&b).unwrap_err(),
        Error::UnsupportedVersion { major: 2, minor: 5 }
    );
    let mut b = good.clone();
    b[4096] = b'x';
    assert!(matches!(Hive::new(&b), Err(Error::BadSignature { .. })));
    // Checksum and sequence numbers are notes, not errors.
    let mut b = good.clone();
    b[4] = 99;
    let h = Hive::new(&b).unwrap();
    assert_eq!(h.notes().len(), 2, "{:?}", h.notes());
    let facts = inspect_windows(&b, &system_gpt());
    assert_eq!(facts.product_name.as_deref(), Some("Windows 10 Pro"));
    assert!(
        facts
            .warnings
            .iter()
            .any(|w| w.contains("sequence numbers"))
    );
}

#[test]
fn truncated_hive_gives_partial_facts() {
    let system = system_gpt();
    // Cut the SOFTWARE hive after the first bin's first few cells: the root (written last) is
    // gone, so SOFTWARE facts are warnings while SYSTEM facts are still read.
    let software = software_win10();
    let cut = &software[..4096 + 512];
    let facts = inspect_windows(cut, &system);
    assert_eq!(facts.product_name, None);
    assert_eq!(facts.hostname.as_deref(), Some("DESKTOP-GPT"));
    assert!(facts.warnings.iter().any(|w| w.contains("truncated")));
    assert!(facts.warnings.iter().any(|w| w.contains("root key")));
    let facts = inspect_windows(&[], &[]);
    assert_eq!(facts.warnings.len(), 2);
}

#[test]
fn subkey_cycle_and_nested_index() {
    let mut b = Builder::new();
    // ROOT -> A -> (A's list also points back to ROOT and to A itself).
    let a_list = b.cell(&[0; 16]); // placeholder, patched below
    let a = b.nk("A", (2, a_list), (0, u32::MAX), false);
    let root_list = b.list(List::Lh, &[a]);
    let root = b.nk("ROOT", (1, root_list), (0, u32::MAX), true);
    let mut li = b"li".to_vec();
    li.extend_from_slice(&2u16.to_le_bytes());
    li.extend_from_slice(&root.to_le_bytes());
    li.extend_from_slice(&a.to_le_bytes());
    b.bins[a_list as usize + 4..a_list as usize + 4 + li.len()].copy_from_slice(&li);
    // An ri inside an ri.
    let inner = b.list(List::Ri(1), &[a]);
    let outer = b.simple_ri(&[inner]);
    let nested = b.nk("NESTED", (1, outer), (0, u32::MAX), false);
    let bytes = b.finish(root);

    let h = Hive::new(&bytes).unwrap();
    let r = h.root().unwrap();
    let mut seen = Vec::new();
    let summary = h.walk(&r, WalkLimits::default(), |d, k| {
        seen.push((d, k.name().to_string()));
        true
    });
    assert_eq!(seen, [(0, "ROOT".to_string()), (1, "A".to_string())]);
    assert_eq!(summary.revisits, 2);
    // Path lookups through the cycle stay bounded by the path's length.
    assert!(h.open(&r, &r"A\ROOT\".repeat(1000)).unwrap().is_some());
    // Depth and count caps.
    let limits = WalkLimits {
        max_depth: 0,
        max_keys: 10,
    };
    assert!(h.walk(&r, limits, |_, _| true).truncated);
    let n = h.key_at(nested).unwrap();
    assert!(matches!(
        h.subkeys(&n),
        Err(Error::BadSignature {
            what: "subkey list",
            ..
        })
    ));
}

#[test]
fn hostile_counts_and_sizes() {
    let mut b = Builder::new();
    let vk_huge = {
        let mut vk = b"vk".to_vec();
        vk.extend_from_slice(&0u16.to_le_bytes());
        vk.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes()); // ~2 GiB of data
        vk.extend_from_slice(&32u32.to_le_bytes());
        vk.extend_from_slice(&3u32.to_le_bytes());
        vk.extend_from_slice(&[0; 4]);
        b.cell(&vk)
    };
    let vk_oob = {
        let mut vk = b"vk".to_vec();
        vk.extend_from_slice(&1u16.to_le_bytes());
        vk.extend_from_slice(&100u32.to_le_bytes());
        vk.extend_from_slice(&0x00F0_0000u32.to_le_bytes()); // past the end
        vk.extend_from_slice(&3u32.to_le_bytes());
        vk.extend_from_slice(&1u16.to_le_bytes());
        vk.extend_from_slice(&[0, 0, b'X']);
        b.cell(&vk)
    };
    let values: Vec<u8> = [vk_huge, vk_oob]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect();
    let values = b.cell(&values);
    // Claims 4 billion values and subkeys; the lists are tiny.
    let k1 = b.nk("COUNTS", (u32::MAX, values), (u32::MAX, values), false);
    let k2 = b.nk("TWO", (0, u32::MAX), (2, values), false);
    let list = b.list(List::Lh, &[k1, k2]);
    let root = b.nk("ROOT", (2, list), (0, u32::MAX), true);
    let bytes = b.finish(root);
    let h = Hive::new(&bytes).unwrap();
    let r = h.root().unwrap();
    let k1 = h.subkey(&r, "counts").unwrap().unwrap();
    assert!(matches!(h.values(&k1), Err(Error::TooMany { .. })));
    assert!(h.subkeys(&k1).is_err());
    let k2 = h.subkey(&r, "two").unwrap().unwrap();
    let vals = h.values(&k2).unwrap();
    assert!(matches!(
        h.value_bytes(&vals[0]),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        h.value_bytes(&vals[1]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        h.key_at(0xFFFF_FFF0),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(h.key_at(0), Err(Error::UnallocatedCell { .. })));
    assert!(matches!(h.key_at(values), Err(Error::BadCell { .. })));
}

#[test]
fn corrupt_values_become_warnings() {
    // Wrong types where strings and DWORDs are expected.
    let cv = node(
        "CurrentVersion",
        vec![
            ("ProductName", REG_DWORD, dw(7)),
            ("CurrentVersion", REG_SZ, sz("six.one")),
        ],
        vec![],
    );
    let software = hive(&path(&["ROOT", "Microsoft", "Windows NT"], cv));
    let system = hive(&node(
        "ROOT",
        vec![],
        vec![
            node("Select", vec![("Current", REG_SZ, sz("1"))], vec![]),
            path(
                &["ControlSet001", "Services", "Tcpip"],
                node("Parameters", vec![("Hostname", REG_SZ, sz("h1"))], vec![]),
            ),
        ],
    ));
    let facts = inspect_windows(&software, &system);
    assert_eq!(facts.product_name, None);
    assert_eq!(facts.major_version, None);
    assert_eq!(facts.hostname.as_deref(), Some("h1"));
    assert_eq!(facts.current_control_set.as_deref(), Some("ControlSet001"));
    let w = facts.warnings.join("\n");
    assert!(w.contains("ProductName"), "{w}");
    assert!(w.contains("six.one"), "{w}");
    assert!(w.contains(r"Select\Current"), "{w}");
}

/// A deterministic stand-in for the fuzzer: thousands of mutated hives, none may panic.
#[test]
fn mutations_never_panic() {
    let originals = [software_win10(), system_gpt()];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000 {
        let mut b = originals[round % 2].clone();
        for _ in 0..1 + next() % 8 {
            let at = 4096 + (next() as usize) % (b.len() - 4096);
            b[at] = next() as u8;
        }
        if round % 7 == 0 {
            let keep = 4096 + (next() as usize) % (b.len() - 4096);
            b.truncate(keep);
        }
        let facts = inspect_windows(&b, &b);
        let _ = serde_json::to_string(&facts).unwrap();
        if let Ok(h) = Hive::new(&b)
            && let Ok(r) = h.root()
        {
            let limits = WalkLimits {
                max_depth: 64,
                max_keys: 10_000,
            };
            h.walk(&r, limits, |_, k| {
                if let Ok(vals) = h.values(k) {
                    for v in vals {
                        let _ = h.value_data(&v);
                    }
                }
                let _ = h.security_descriptor(k);
                true
            });
        }
    }
}

#[test]
fn repeated_long_names_are_bounded() {
    let mut b = Builder::new();
    let long = "n".repeat(60_000);
    let vk = b.value(&long, REG_DWORD, &dw(1));
    let list: Vec<u8> = std::iter::repeat_n(vk, 100)
        .flat_map(u32::to_le_bytes)
        .collect();
    let list = b.cell(&list);
    let long_key = b.nk(&"k".repeat(2000), (0, u32::MAX), (0, u32::MAX), false);
    let keys = b.list(List::Li, &[long_key]);
    let root = b.nk("ROOT", (1, keys), (100, list), true);
    let bytes = b.finish(root);
    let h = Hive::new(&bytes).unwrap();
    let r = h.root().unwrap();
    assert!(matches!(
        h.values(&r),
        Err(Error::TooMany {
            limit: MAX_NAME_BYTES_PER_KEY,
            ..
        })
    ));
    assert!(h.value(&r, "other").is_err());
    assert!(matches!(h.subkeys(&r), Err(Error::BadCell { .. })));
}

/// Writes the built hives as fuzzing seeds: `WINREG_WRITE_SEEDS=fuzz/seeds/winreg_hive cargo
/// test -p winreg write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = PathBuf::from(std::env::var_os("WINREG_WRITE_SEEDS").expect("WINREG_WRITE_SEEDS"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("software-win10"), software_win10()).unwrap();
    std::fs::write(dir.join("system-gpt"), system_gpt()).unwrap();
}
