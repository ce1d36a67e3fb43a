//! Fuzzes the ext4 reader, starting from the ext2 and ext4 images `seeds/make.sh` writes to
//! `seeds/ext4/`; `open` probes, so mutations that change the magic land in other readers
//! too, which is fine.
#![no_main]

mod walk;

libfuzzer_sys::fuzz_target!(|data: &[u8]| walk::walk(data));
