//! Fuzzes the fat reader, starting from the FAT12 and FAT16 images `seeds/make.sh` writes to
//! `seeds/fat/`; `open` probes, so mutations that change the magic land in other readers
//! too, which is fine.
#![no_main]

mod walk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| walk::walk(data));
