//! Reloading the configuration file when it changes, through inotify on its
//! folder: editors replace files by renaming over them, which a watch on
//! the file itself would lose. Nothing wakes heapland until the folder
//! changes.

use std::{mem::MaybeUninit, path::Path};

use rustix::{
    fs::inotify::{self, CreateFlags, WatchFlags},
    io::Errno,
};
use smithay::reexports::calloop::{generic::Generic, Interest, LoopHandle, Mode, PostAction};
use tracing::{debug, info};

use crate::state::Heapland;

/// Watches `path`'s folder and reloads when `path` has been written and
/// closed, renamed into place or removed (not when it is created: it is
/// still empty then). A folder that does not exist is not
/// watched: the reload binding still reads the file.
pub fn watch(path: &Path, handle: &LoopHandle<'static, Heapland>) -> Result<(), String> {
    // A relative path's folder is the working directory; a symlink's
    // target is the file an editor writes.
    let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("{}: not a file path", path.display()));
    };
    if !dir.is_dir() {
        info!(
            "{} does not exist: the configuration is read again only on the reload binding",
            dir.display()
        );
        return Ok(());
    }
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
        .map_err(|e| format!("inotify_init: {e}"))?;
    inotify::add_watch(
        &fd,
        dir,
        WatchFlags::CLOSE_WRITE | WatchFlags::MOVED_TO | WatchFlags::DELETE,
    )
    .map_err(|e| format!("inotify_add_watch {}: {e}", dir.display()))?;
    let name = name.to_owned();
    handle
        .insert_source(
            Generic::new(fd, Interest::READ, Mode::Level),
            move |_, fd, state| {
                let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
                let mut reader = inotify::Reader::new(&**fd, &mut buf);
                let mut ours = false;
                loop {
                    match reader.next() {
                        Ok(event) => {
                            ours |= event
                                .file_name()
                                .is_some_and(|n| n.to_bytes() == name.as_encoded_bytes());
                        }
                        Err(Errno::AGAIN) => break,
                        Err(err) => {
                            debug!("reading inotify events: {err}");
                            break;
                        }
                    }
                }
                if ours {
                    state.reload_config();
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| format!("watching {}: {e}", dir.display()))?;
    Ok(())
}
