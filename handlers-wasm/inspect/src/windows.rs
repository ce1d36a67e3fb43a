//! Windows roots: found by their system root directory, described from the SOFTWARE and SYSTEM
//! registry hives by the `winreg` crate, inside this sandbox.

use crate::guest::Guest;
use crate::pkg::Application;
use crate::report::{DriveMapping, Location, OsReport, PackageDatabase};
use crate::{Options, Section};

/// Largest hive read (real SOFTWARE hives are tens of MiB).
const MAX_HIVE: u64 = 256 << 20;

/// The system root directory (`/Windows`, as spelled on disk), if this filesystem is a Windows
/// root: libguestfs' rule, a directory holding `System32/config` and `System32/cmd.exe`.
pub fn system_root(g: &Guest) -> Option<String> {
    for name in ["windows", "winnt", "win32", "win"] {
        let Some(root) = g.resolve_nocase(&format!("/{name}")) else {
            continue;
        };
        if !g.is_dir(&root) {
            continue;
        }
        let config = g.resolve_nocase(&format!("{root}/system32/config"));
        let cmd = g.resolve_nocase(&format!("{root}/system32/cmd.exe"));
        if config.is_some_and(|c| g.is_dir(&c)) && cmd.is_some_and(|c| g.is_file(&c)) {
            return Some(root);
        }
    }
    None
}

/// A drive letter's location among the granted volumes: an MBR disk signature + partition
/// start, or a GPT partition GUID.
pub type Resolver<'a> = dyn Fn(&winreg::DriveMapping) -> Option<Location> + 'a;

/// Everything the registry says, plus the architecture from the PE header of the kernel or
/// `cmd.exe` (libguestfs' source), into `os`.
pub fn inspect(
    g: &Guest,
    root: &str,
    os: &mut OsReport,
    options: &Options,
    resolve: &Resolver<'_>,
) {
    os.os_type = "windows".into();
    os.distro = "windows".into();
    os.windows_systemroot = Some(root.to_string());
    let hive = |name: &str, os: &mut OsReport| -> Option<(String, Vec<u8>)> {
        let path = g.resolve_nocase(&format!("{root}/system32/config/{name}"))?;
        match g.read(&path, MAX_HIVE) {
            Ok(Some(data)) => Some((path, data)),
            Ok(None) => None,
            Err(e) => {
                os.warnings.push(e);
                None
            }
        }
    };
    let software = hive("software", os);
    let system = hive("system", os);
    if software.is_none() {
        os.warnings
            .push(format!("{root}/System32/config/SOFTWARE not found"));
    }
    if system.is_none() {
        os.warnings
            .push(format!("{root}/System32/config/SYSTEM not found"));
    }
    let facts = winreg::inspect_windows(
        software.as_ref().map_or(&[][..], |(_, d)| d),
        system.as_ref().map_or(&[][..], |(_, d)| d),
    );
    os.product_name = facts.product_name;
    os.product_variant = facts.product_variant;
    os.major_version = facts.major_version.unwrap_or(0);
    os.minor_version = facts.minor_version.unwrap_or(0);
    os.build = facts.build;
    os.hostname = facts.hostname;
    os.windows_current_control_set = facts.current_control_set;
    let pe = ["system32/ntoskrnl.exe", "system32/cmd.exe"]
        .iter()
        .find_map(|f| {
            let path = g.resolve_nocase(&format!("{root}/{f}"))?;
            winreg::pe_arch(&g.head(&path, 4096)?)
        });
    os.arch = pe.map(String::from).or(facts.arch);
    os.drive_mappings = facts
        .drive_mappings
        .into_iter()
        .map(|(letter, registry)| {
            let location = resolve(&registry);
            (letter, DriveMapping { registry, location })
        })
        .collect();
    if options.wants(Section::Applications) {
        let mut apps: Vec<Application> = facts
            .applications
            .into_iter()
            .map(|a| Application {
                name: a.name,
                display_name: a.display_name,
                version: a.version.unwrap_or_default(),
                publisher: a.publisher.unwrap_or_default(),
                install_path: a.install_location.unwrap_or_default(),
                ..Application::default()
            })
            .collect();
        // Sorted like every other list (libguestfs sorts applications by name).
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        os.applications = Some(apps);
        if let Some((path, _)) = &software {
            os.package_database = Some(PackageDatabase {
                format: "windows-registry",
                path: path.clone(),
            });
        }
    }
    os.warnings.extend(facts.warnings);
}
