// Shared by every target: open the input as a filesystem and walk all of it, bounded.
use guestkit_block::{BlockSource, MemSource};
use guestkit_fs::{FileKind, open};
use std::sync::Arc;

pub fn walk(data: &[u8]) {
    let src: Arc<dyn BlockSource> = Arc::new(MemSource(data.to_vec()));
    let Ok(fs) = open(src) else { return };
    let _ = (fs.label(), fs.uuid());
    let mut stack = vec![String::from("/")];
    let mut budget = 2000;
    while let Some(dir) = stack.pop() {
        let Ok(listing) = fs.read_dir(&dir, 256) else {
            continue;
        };
        for e in listing.entries {
            budget -= 1;
            if budget == 0 {
                return;
            }
            let path = if dir == "/" {
                format!("/{}", e.name)
            } else {
                format!("{dir}/{}", e.name)
            };
            let _ = fs.lstat(&path);
            match e.kind {
                FileKind::Dir if path.matches('/').count() < 16 => stack.push(path),
                FileKind::File => {
                    let _ = fs.read_file(&path, 0, 1 << 16);
                    let _ = fs.read_file(&path, 4093, 5000);
                }
                FileKind::Symlink => {
                    let _ = fs.read_link(&path);
                    let _ = fs.stat(&path);
                }
                _ => {}
            }
        }
    }
}
