#![no_main]
//! Fuzzes the vmdk reader on in-memory images.

use guestkit_formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    guestkit_formats_fuzz::open_and_read(data, Some(Format::Vmdk));
});
