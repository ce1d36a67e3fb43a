#![no_main]
//! Fuzzes the hive reader: open, walk every key, decode every value, and run the Windows facts
//! over the same bytes as both hives. Each input is tried as a whole file and, so that the
//! fuzzer reaches the cells without first having to find a valid 4 KiB base block, as the cells
//! of a hive whose valid base block and hbin header are made here (root key at the first cell).
//! Any `Err` or warning is fine; a panic, hang or huge allocation is a bug.

use libfuzzer_sys::fuzz_target;
use winreg::{Hive, WalkLimits, inspect_windows};

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&framed(data));
});

fn exercise(data: &[u8]) {
    let facts = inspect_windows(data, data);
    assert!(facts.warnings.len() <= winreg::MAX_WARNINGS + 1);
    let Ok(hive) = Hive::new(data) else {
        return;
    };
    let Ok(root) = hive.root() else {
        return;
    };
    let limits = WalkLimits {
        max_depth: 64,
        max_keys: 4096,
    };
    hive.walk(&root, limits, |_, key| {
        if let Ok(values) = hive.values(key) {
            for v in values.iter().take(256) {
                let _ = hive.value_data(v);
            }
        }
        let _ = hive.security_descriptor(key);
        true
    });
}

/// `cells` behind a valid base block and hbin header.
fn framed(cells: &[u8]) -> Vec<u8> {
    let bins_len = (32 + cells.len()) as u32;
    let mut out = vec![0u8; 4096];
    out[..4].copy_from_slice(b"regf");
    for (at, v) in [
        (4, 1),
        (8, 1),
        (20, 1),
        (24, 5),
        (32, 1),
        (36, 0x20),
        (40, bins_len),
    ] {
        out[at..at + 4].copy_from_slice(&u32::to_le_bytes(v));
    }
    let sum = (0..127).fold(0u32, |acc, i| {
        acc ^ u32::from_le_bytes([out[i * 4], out[i * 4 + 1], out[i * 4 + 2], out[i * 4 + 3]])
    });
    out[508..512].copy_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(b"hbin");
    out.extend_from_slice(&[0; 28]);
    out.extend_from_slice(cells);
    out
}
