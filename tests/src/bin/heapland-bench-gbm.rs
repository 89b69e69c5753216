//! heapland-bench-gbm: the GBM candidate of heapland-bench.
//!
//! heapland-bench is a static musl binary and cannot link Mesa's libgbm; it
//! starts this glibc helper once (`heapland-bench-gbm /dev/dri/cardN`) and asks
//! it for one buffer at a time over a pipe, interleaved with its other
//! candidates (protocol in heapland_tests::bench::gbm_protocol). The helper
//! times each buffer itself, the way the bench times its own: create the
//! buffer object (LINEAR, for rendering), map it for writing, write one byte
//! in every page, unmap, destroy.
//!
//! NV12: where the GBM backend cannot make a linear NV12 buffer whose mapping
//! covers both planes (Mesa's kms_swrast cannot), the helper allocates what
//! dumb buffers allocate for NV12, an 8 bpp (R8) buffer of height * 3 / 2
//! rows, and says so in its answer to `prepare`.

#[cfg(target_env = "gnu")]
mod helper {
    use std::{
        io::{BufRead, Write},
        os::fd::{AsFd, BorrowedFd, OwnedFd},
        time::Instant,
    };

    use gbm::{BufferObjectFlags as Flags, Device, Format};
    use heapland_tests::bench::{gbm_protocol as proto, touch};

    struct Card(OwnedFd);

    impl AsFd for Card {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }

    /// What `run` allocates, as settled by `prepare`.
    #[derive(Clone, Copy)]
    struct Shape {
        width: u32,
        height: u32,
        format: Format,
        flags: Flags,
        /// Bytes the mapping must cover: the whole buffer.
        bytes: usize,
    }

    const FLAG_SETS: [(Flags, &str); 2] = [
        (Flags::LINEAR.union(Flags::RENDERING), "LINEAR|RENDERING"),
        (Flags::LINEAR, "LINEAR"),
    ];

    fn format_name(f: Format) -> &'static str {
        match f {
            Format::Xrgb8888 => "XRGB8888",
            Format::Nv12 => "NV12",
            Format::R8 => "R8",
            _ => "?",
        }
    }

    /// One buffer: create, map for writing, touch every page, unmap, destroy.
    /// Returns the nanoseconds it took.
    fn once(dev: &Device<Card>, s: &Shape) -> Result<u128, String> {
        let t = Instant::now();
        let mut bo = dev
            .create_buffer_object::<()>(s.width, s.height, s.format, s.flags)
            .map_err(|e| {
                format!(
                    "gbm_bo_create {} {}x{}: {e}",
                    format_name(s.format),
                    s.width,
                    s.height
                )
            })?;
        let covered = bo
            .map_mut(0, 0, s.width, s.height, |m| {
                let buf = m.buffer_mut();
                touch(buf);
                buf.len()
            })
            .map_err(|e| format!("gbm_bo_map: {e}"))?;
        drop(bo);
        let elapsed = t.elapsed().as_nanos();
        if covered < s.bytes {
            return Err(format!(
                "the mapping covers {covered} of the buffer's {} bytes",
                s.bytes
            ));
        }
        Ok(elapsed)
    }

    /// The first shape that allocates and maps whole, with a note of what it is.
    fn prepare(
        dev: &Device<Card>,
        width: u32,
        height: u32,
        fourcc: &str,
    ) -> Result<(Shape, String), String> {
        let mut tries: Vec<(u32, u32, Format, usize)> = Vec::new();
        match fourcc {
            "XRGB8888" => tries.push((
                width,
                height,
                Format::Xrgb8888,
                width as usize * height as usize * 4,
            )),
            "NV12" => {
                let bytes = width as usize * height as usize * 3 / 2;
                tries.push((width, height, Format::Nv12, bytes));
                tries.push((width, height * 3 / 2, Format::R8, bytes));
            }
            other => return Err(format!("unknown format {other}")),
        }
        let mut failures = Vec::new();
        for (w, h, format, bytes) in tries {
            for (flags, flag_names) in FLAG_SETS {
                let shape = Shape {
                    width: w,
                    height: h,
                    format,
                    flags,
                    bytes,
                };
                match once(dev, &shape) {
                    Ok(_) => {
                        let mut note = format!("{} {w}x{h} {flag_names}", format_name(format));
                        if !failures.is_empty() {
                            note.push_str(&format!(" (not {})", failures.join("; ")));
                        }
                        return Ok((shape, note));
                    }
                    Err(e) => failures.push(format!("{flag_names}: {e}")),
                }
            }
        }
        Err(failures.join("; "))
    }

    fn reply(out: &mut impl Write, word: &str, text: &str) -> std::io::Result<()> {
        let text = text.replace('\n', " ");
        writeln!(out, "{word} {text}")?;
        out.flush()
    }

    pub fn main() -> std::process::ExitCode {
        use rustix::fs::{Mode, OFlags};
        let mut out = std::io::stdout().lock();
        let Some(path) = std::env::args().nth(1) else {
            let _ = reply(
                &mut out,
                proto::ERROR,
                "usage: heapland-bench-gbm /dev/dri/cardN",
            );
            return std::process::ExitCode::from(2);
        };
        let started =
            rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("open {path}: {e}"))
                .and_then(|fd| {
                    Device::new(Card(fd)).map_err(|e| format!("gbm_create_device on {path}: {e}"))
                });
        let dev = match started {
            Ok(d) => d,
            Err(e) => {
                let _ = reply(&mut out, proto::ERROR, &e);
                return std::process::ExitCode::FAILURE;
            }
        };
        if reply(&mut out, proto::READY, dev.backend_name()).is_err() {
            return std::process::ExitCode::FAILURE;
        }
        let mut shape: Option<Shape> = None;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words.as_slice() {
                [cmd, w, h, fourcc] if *cmd == proto::PREPARE => match (w.parse(), h.parse()) {
                    (Ok(w), Ok(h)) => prepare(&dev, w, h, fourcc).map(|(s, note)| {
                        shape = Some(s);
                        note
                    }),
                    _ => Err(format!("bad size {w}x{h}")),
                },
                [cmd] if *cmd == proto::RUN => match &shape {
                    Some(s) => once(&dev, s).map(|ns| ns.to_string()),
                    None => Err("run before prepare".into()),
                },
                [cmd] if *cmd == proto::QUIT => break,
                _ => Err(format!("unknown command {line:?}")),
            };
            let sent = match answer {
                Ok(text) => reply(&mut out, proto::OK, &text),
                Err(e) => {
                    if proto::PREPARE == words.first().copied().unwrap_or_default() {
                        shape = None;
                    }
                    reply(&mut out, proto::ERROR, &e)
                }
            };
            if sent.is_err() {
                break;
            }
        }
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(target_env = "gnu")]
fn main() -> std::process::ExitCode {
    helper::main()
}

#[cfg(not(target_env = "gnu"))]
fn main() -> std::process::ExitCode {
    println!(
        "{} this build has no GBM: build heapland-bench-gbm for a glibc target",
        heapland_tests::bench::gbm_protocol::ERROR
    );
    std::process::ExitCode::FAILURE
}
