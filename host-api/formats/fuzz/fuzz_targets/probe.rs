#![no_main]
//! Fuzzes format probing followed by whichever reader it picks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    guestkit_formats_fuzz::open_and_read(data, None);
});
