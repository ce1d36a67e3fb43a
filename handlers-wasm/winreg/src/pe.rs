//! The architecture of a Windows executable from its PE header, for telling a guest's
//! architecture from `ntoskrnl.exe` or `cmd.exe` when the registry does not say.

/// The machine of a PE image as libguestfs names architectures ("x86_64", "i386", "aarch64",
/// "arm", "ia64"), from the first bytes of the file (the DOS header, then the PE header it points
/// to; 4 KiB is plenty). `None` if it is not a PE image or the machine is unknown.
pub fn pe_arch(head: &[u8]) -> Option<&'static str> {
    if head.get(..2)? != b"MZ" {
        return None;
    }
    let lfanew = u32::from_le_bytes(head.get(0x3C..0x40)?.try_into().ok()?) as usize;
    let pe = head.get(lfanew..lfanew.checked_add(6)?)?;
    if &pe[..4] != b"PE\0\0" {
        return None;
    }
    match u16::from_le_bytes([pe[4], pe[5]]) {
        0x8664 => Some("x86_64"),
        0x014C => Some("i386"),
        0xAA64 => Some("aarch64"),
        0x01C0 | 0x01C4 => Some("arm"),
        0x0200 => Some("ia64"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::pe_arch;

    fn image(lfanew: u32, machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x100];
        b[..2].copy_from_slice(b"MZ");
        b[0x3C..0x40].copy_from_slice(&lfanew.to_le_bytes());
        let at = lfanew as usize;
        b[at..at + 4].copy_from_slice(b"PE\0\0");
        b[at + 4..at + 6].copy_from_slice(&machine.to_le_bytes());
        b
    }

    #[test]
    fn machines() {
        assert_eq!(pe_arch(&image(0x40, 0x8664)), Some("x86_64"));
        assert_eq!(pe_arch(&image(0x80, 0x014C)), Some("i386"));
        assert_eq!(pe_arch(&image(0x40, 0xAA64)), Some("aarch64"));
        assert_eq!(pe_arch(&image(0x40, 0x1234)), None);
    }

    #[test]
    fn not_pe() {
        assert_eq!(pe_arch(b""), None);
        assert_eq!(pe_arch(b"MZ"), None);
        let mut b = image(0x40, 0x8664);
        b[0x3C..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pe_arch(&b), None);
        let mut b = image(0x40, 0x8664);
        b[0x40] = b'X';
        assert_eq!(pe_arch(&b), None);
        assert_eq!(pe_arch(&image(0x40, 0x8664)[..0x45]), None);
    }
}
