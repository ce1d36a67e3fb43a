#![no_main]
//! Fuzzes the vhd reader on in-memory images.

use guestkit_formats::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    guestkit_formats_fuzz::open_and_read(data, Some(Format::Vhd));
});
