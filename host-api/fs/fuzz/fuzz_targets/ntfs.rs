//! Fuzzes the ntfs reader: seed the corpus with small ntfs images (e.g. from the fs-images fixture);
//! `open` probes, so mutations that change the magic land in other readers too, which is fine.
#![no_main]

mod walk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| walk::walk(data));
