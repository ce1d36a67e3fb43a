//! Test-only regf writer: builds small hives in memory, including shapes hivex does not write
//! (li and ri lists, big-data values, UTF-16 value names) and deliberately broken ones.

pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_DWORD_BE: u32 = 5;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// How a key's subkey list is written.
#[derive(Clone, Copy)]
pub enum List {
    Lh,
    Lf,
    Li,
    /// An `ri` index over `li` lists of at most this many entries each.
    Ri(usize),
}

pub struct Node {
    pub name: String,
    pub values: Vec<(String, u32, Vec<u8>)>,
    pub children: Vec<Node>,
    pub list: List,
}

pub fn node(name: &str, values: Vec<(&str, u32, Vec<u8>)>, children: Vec<Node>) -> Node {
    Node {
        name: name.into(),
        values: values
            .into_iter()
            .map(|(n, t, d)| (n.to_string(), t, d))
            .collect(),
        children,
        list: List::Lh,
    }
}

/// A REG_SZ payload: UTF-16LE with its NUL.
pub fn sz(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

pub fn dw(n: u32) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

pub struct Builder {
    pub bins: Vec<u8>,
}

impl Builder {
    pub fn new() -> Self {
        // One hbin header; its size is fixed up in finish().
        let mut bins = vec![0u8; 32];
        bins[..4].copy_from_slice(b"hbin");
        Builder { bins }
    }

    /// Appends an allocated cell holding `data`; returns its offset.
    pub fn cell(&mut self, data: &[u8]) -> u32 {
        let offset = self.bins.len() as u32;
        let size = (4 + data.len()).div_ceil(8) * 8;
        self.bins.extend_from_slice(&(-(size as i32)).to_le_bytes());
        self.bins.extend_from_slice(data);
        self.bins.resize(offset as usize + size, 0);
        offset
    }

    pub fn value(&mut self, name: &str, kind: u32, data: &[u8]) -> u32 {
        let (raw_name, compressed) = encode_name(name);
        let (size, data_offset) = if data.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..data.len()].copy_from_slice(data);
            (data.len() as u32 | 0x8000_0000, u32::from_le_bytes(inline))
        } else if data.len() > 16_344 {
            let segments: Vec<u32> = data.chunks(16_344).map(|c| self.cell(c)).collect();
            let list: Vec<u8> = segments.iter().flat_map(|o| o.to_le_bytes()).collect();
            let list = self.cell(&list);
            let mut db = b"db".to_vec();
            db.extend_from_slice(&(segments.len() as u16).to_le_bytes());
            db.extend_from_slice(&list.to_le_bytes());
            (data.len() as u32, self.cell(&db))
        } else {
            (data.len() as u32, self.cell(data))
        };
        let mut vk = b"vk".to_vec();
        vk.extend_from_slice(&(raw_name.len() as u16).to_le_bytes());
        vk.extend_from_slice(&size.to_le_bytes());
        vk.extend_from_slice(&data_offset.to_le_bytes());
        vk.extend_from_slice(&kind.to_le_bytes());
        vk.extend_from_slice(&u16::from(compressed).to_le_bytes());
        vk.extend_from_slice(&[0, 0]);
        vk.extend_from_slice(&raw_name);
        self.cell(&vk)
    }

    /// Writes a subkey list of `kind` over `children` (nk offsets).
    pub fn list(&mut self, kind: List, children: &[u32]) -> u32 {
        match kind {
            List::Ri(chunk) => {
                let lists: Vec<u32> = children
                    .chunks(chunk.max(1))
                    .map(|c| self.list(List::Li, c))
                    .collect();
                self.simple_list(b"ri", &lists, false)
            }
            List::Li => self.simple_list(b"li", children, false),
            List::Lf => self.simple_list(b"lf", children, true),
            List::Lh => self.simple_list(b"lh", children, true),
        }
    }

    /// An `ri` index over the given list cells.
    pub fn simple_ri(&mut self, lists: &[u32]) -> u32 {
        self.simple_list(b"ri", lists, false)
    }

    fn simple_list(&mut self, sig: &[u8; 2], entries: &[u32], hints: bool) -> u32 {
        let mut c = sig.to_vec();
        c.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for e in entries {
            c.extend_from_slice(&e.to_le_bytes());
            if hints {
                c.extend_from_slice(&[0; 4]);
            }
        }
        self.cell(&c)
    }

    /// An nk cell; `subkeys`/`values` are list cell offsets (or !0) with their counts.
    pub fn nk(&mut self, name: &str, subkeys: (u32, u32), values: (u32, u32), root: bool) -> u32 {
        let (raw_name, compressed) = encode_name(name);
        let mut nk = vec![0u8; 76];
        nk[..2].copy_from_slice(b"nk");
        let flags: u16 = if compressed { 0x20 } else { 0 } | if root { 0x04 } else { 0 };
        nk[2..4].copy_from_slice(&flags.to_le_bytes());
        nk[20..24].copy_from_slice(&subkeys.0.to_le_bytes());
        nk[28..32].copy_from_slice(&subkeys.1.to_le_bytes());
        nk[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        nk[36..40].copy_from_slice(&values.0.to_le_bytes());
        nk[40..44].copy_from_slice(&values.1.to_le_bytes());
        nk[44..48].copy_from_slice(&self.sk().to_le_bytes());
        nk[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        nk[72..74].copy_from_slice(&(raw_name.len() as u16).to_le_bytes());
        nk.extend_from_slice(&raw_name);
        self.cell(&nk)
    }

    /// A tiny sk cell (a fresh one per key: sharing is not what is tested here).
    fn sk(&mut self) -> u32 {
        let mut sk = vec![0u8; 20];
        sk[..2].copy_from_slice(b"sk");
        sk[12..16].copy_from_slice(&1u32.to_le_bytes());
        sk[16..20].copy_from_slice(&4u32.to_le_bytes());
        sk.extend_from_slice(&[1, 0, 0x04, 0x80]);
        self.cell(&sk)
    }

    /// Writes `n` and everything below it; returns the nk offset.
    pub fn tree(&mut self, n: &Node, root: bool) -> u32 {
        let children: Vec<u32> = n.children.iter().map(|c| self.tree(c, false)).collect();
        let values: Vec<u32> = n
            .values
            .iter()
            .map(|(name, kind, data)| self.value(name, *kind, data))
            .collect();
        let subkeys = if children.is_empty() {
            (0, u32::MAX)
        } else {
            (children.len() as u32, self.list(n.list, &children))
        };
        let values = if values.is_empty() {
            (0, u32::MAX)
        } else {
            let list: Vec<u8> = values.iter().flat_map(|o| o.to_le_bytes()).collect();
            (values.len() as u32, self.cell(&list))
        };
        self.nk(&n.name, subkeys, values, root)
    }

    /// The whole file: base block + the one hbin, padded to 4 KiB.
    pub fn finish(mut self, root: u32) -> Vec<u8> {
        let len = self.bins.len().div_ceil(4096) * 4096;
        let free = len - self.bins.len();
        if free >= 8 {
            // The rest of the bin is one free cell, as Windows leaves it.
            let at = self.bins.len();
            self.bins.resize(len, 0);
            self.bins[at..at + 4].copy_from_slice(&(free as i32).to_le_bytes());
        }
        self.bins.resize(len, 0);
        self.bins[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let mut base = vec![0u8; 4096];
        base[..4].copy_from_slice(b"regf");
        base[4..8].copy_from_slice(&7u32.to_le_bytes());
        base[8..12].copy_from_slice(&7u32.to_le_bytes());
        base[20..24].copy_from_slice(&1u32.to_le_bytes());
        base[24..28].copy_from_slice(&5u32.to_le_bytes());
        base[32..36].copy_from_slice(&1u32.to_le_bytes());
        base[36..40].copy_from_slice(&root.to_le_bytes());
        base[40..44].copy_from_slice(&(len as u32).to_le_bytes());
        base[44..48].copy_from_slice(&1u32.to_le_bytes());
        let sum = (0..127).fold(0u32, |acc, i| {
            acc ^ u32::from_le_bytes(base[i * 4..i * 4 + 4].try_into().unwrap())
        });
        base[508..512].copy_from_slice(&sum.to_le_bytes());
        base.extend_from_slice(&self.bins);
        base
    }
}

/// Latin-1 names are stored compressed; anything else as UTF-16LE.
fn encode_name(name: &str) -> (Vec<u8>, bool) {
    if name.chars().all(|c| (c as u32) < 0x100) {
        (name.chars().map(|c| c as u8).collect(), true)
    } else {
        (
            name.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            false,
        )
    }
}

/// A whole hive from a tree whose top node is the root key.
pub fn hive(root: &Node) -> Vec<u8> {
    let mut b = Builder::new();
    let r = b.tree(root, true);
    b.finish(r)
}

/// Builds the path `parts` of nested keys, the last holding `leaf`'s values and children.
pub fn path(parts: &[&str], leaf: Node) -> Node {
    let mut n = leaf;
    for p in parts.iter().rev() {
        n = node(p, vec![], vec![n]);
    }
    n
}

/// A SOFTWARE hive like Windows 10 writes (major/minor DWORDs, CurrentVersion "6.3").
pub fn software_win10() -> Vec<u8> {
    let cv = node(
        "CurrentVersion",
        vec![
            ("ProductName", REG_SZ, sz("Windows 10 Pro")),
            ("InstallationType", REG_SZ, sz("Client")),
            ("EditionID", REG_SZ, sz("Professional")),
            ("CurrentVersion", REG_SZ, sz("6.3")),
            ("CurrentMajorVersionNumber", REG_DWORD, dw(10)),
            ("CurrentMinorVersionNumber", REG_DWORD, dw(0)),
            ("CurrentBuild", REG_SZ, sz("19045")),
            ("SystemRoot", REG_SZ, sz(r"C:\WINDOWS")),
        ],
        vec![],
    );
    let app = |name: &str, display: &str| {
        node(
            name,
            vec![
                ("DisplayName", REG_SZ, sz(display)),
                ("DisplayVersion", REG_SZ, sz("1.0")),
            ],
            vec![],
        )
    };
    let mut uninstall = node(
        "Uninstall",
        vec![],
        (0..40)
            .map(|i| app(&format!("app{i:02}"), &format!("App {i}")))
            .collect(),
    );
    uninstall.list = List::Ri(16);
    let mut microsoft = node(
        "Microsoft",
        vec![],
        vec![
            node("Windows NT", vec![], vec![cv]),
            path(&["Windows", "CurrentVersion"], uninstall),
        ],
    );
    microsoft.list = List::Lf;
    hive(&node("ROOT", vec![], vec![microsoft]))
}

/// A SYSTEM hive with two control sets, a GPT C:, an MBR G:, `MountedDevices` values that are
/// not disk locations, and no Tcpip hostname (so the NetBIOS name is used).
pub fn system_gpt() -> Vec<u8> {
    let mut gpt = b"DMIO:ID:".to_vec();
    gpt.extend_from_slice(&[
        0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a, 0xf0, 0xde, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ]);
    let set = |n: &str, computer: &str, arch: &str| {
        node(
            n,
            vec![],
            vec![node(
                "Control",
                vec![],
                vec![
                    path(
                        &["ComputerName"],
                        node(
                            "ComputerName",
                            vec![("ComputerName", REG_SZ, sz(computer))],
                            vec![],
                        ),
                    ),
                    path(
                        &["Session Manager"],
                        node(
                            "Environment",
                            vec![("PROCESSOR_ARCHITECTURE", REG_SZ, sz(arch))],
                            vec![],
                        ),
                    ),
                ],
            )],
        )
    };
    let mut root = node(
        "SYSTEM",
        vec![],
        vec![
            set("ControlSet001", "OLD-NAME", "x86"),
            set("ControlSet002", "DESKTOP-GPT", "ARM64"),
            node(
                "MountedDevices",
                vec![
                    (r"\DosDevices\C:", REG_BINARY, gpt),
                    (r"\DosDevices\D:", REG_SZ, sz("not binary")),
                    // 13 bytes: neither an MBR location nor a GPT one.
                    (r"\DosDevices\E:", REG_BINARY, vec![0x31; 13]),
                    (
                        r"\DosDevices\F:",
                        REG_BINARY,
                        sz(r"\??\IDE#CdRomQEMU#5&1&0&0"),
                    ),
                    (
                        r"\??\Volume{00000000-1111-2222-3333-444455556666}",
                        REG_BINARY,
                        vec![1, 2, 3, 4, 0, 0, 0x10, 0, 0, 0, 0, 0],
                    ),
                    // Any case, as Windows compares names.
                    (
                        r"\dosdevices\g:",
                        REG_BINARY,
                        vec![0xc4, 0x91, 0x3e, 0x7a, 0, 0, 0x10, 0, 0, 0, 0, 0],
                    ),
                ],
                vec![],
            ),
            node("Select", vec![("Current", REG_DWORD, dw(2))], vec![]),
        ],
    );
    root.list = List::Li;
    hive(&root)
}
