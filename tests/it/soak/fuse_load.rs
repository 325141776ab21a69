//! FUSE readers through the daemon's `-mount`: `pread` at random offsets, `cat` of whole files,
//! `ls`, and `cat`s interrupted with SIGINT. Every syscall runs under a bound.

use std::{
    fs,
    io::{self, Read},
    os::unix::{fs::FileExt, process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use super::{
    client::{settle, Fail},
    ctx::{Ctx, Rng, Target, BOUND},
};

/// Runs `f` on its own thread; `None` when it is not done within `limit` (the thread is left
/// blocked; the mount's teardown ends it).
fn bounded<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// An errno the mount documents while the daemon restarts or the disk is full.
fn errno_fail(what: &str, e: &io::Error) -> Fail {
    let documented = [
        libc::ENOTCONN,
        libc::EIO,
        libc::ENOSPC,
        libc::ENOENT,
        libc::ECONNABORTED,
    ];
    match e.raw_os_error() {
        Some(n) if documented.contains(&n) => Fail::Conn(format!("{what}: {e}")),
        _ => Fail::Bad(format!("{what}: {e}")),
    }
}

fn pread(ctx: &Arc<Ctx>, rng: &mut Rng, t: &Target) -> Result<(), Fail> {
    let path = ctx.mnt.join(&t.ih).join(&t.path);
    let reads: Vec<(u64, usize)> = (0..rng.range(1, 4))
        .map(|_| {
            let off = rng.below(t.len);
            (off, rng.range(1, 1 << 20).min(t.len - off) as usize)
        })
        .collect();
    let p = path.clone();
    let r = bounded(BOUND, move || -> io::Result<Vec<(u64, usize, Vec<u8>)>> {
        let f = fs::File::open(&p)?;
        let mut out = Vec::new();
        for (off, len) in reads {
            let mut buf = vec![0u8; len];
            let mut got = 0;
            while got < len {
                match f.read_at(&mut buf[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(got);
            out.push((off, len, buf));
        }
        Ok(out)
    });
    let reads = match r {
        None => {
            return Err(Fail::Hung(format!(
                "pread of {} not done within {BOUND:?}",
                path.display()
            )))
        }
        Some(Err(e)) => return Err(errno_fail("pread", &e)),
        Some(Ok(v)) => v,
    };
    for (off, len, data) in reads {
        if data.len() != len {
            return Err(Fail::Bad(format!(
                "pread of {len} at {off}: {} bytes",
                data.len()
            )));
        }
        if !ctx.verify(t, off, &data, "fuse pread") {
            return Err(Fail::Wrong);
        }
    }
    Ok(())
}

/// Waits for `child` at most `limit`; SIGKILLs it past that.
fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn cat(ctx: &Arc<Ctx>, t: &Target) -> Result<(), Fail> {
    let path = ctx.mnt.join(&t.ih).join(&t.path);
    let mut child = Command::new("cat")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Fail::Bad(format!("spawning cat: {e}")))?;
    let mut out = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let st = wait(&mut child, BOUND);
    let data = reader.join().unwrap_or_default();
    let mut err = String::new();
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    match st {
        None => {
            return Err(Fail::Hung(format!(
                "cat {} not done within {BOUND:?}",
                path.display()
            )))
        }
        Some(s) if !s.success() => {
            let e = err.trim().to_string();
            let documented = [
                "not connected",
                "Input/output error",
                "No space left",
                "No such file",
            ];
            return Err(match documented.iter().any(|d| e.contains(d)) {
                true => Fail::Conn(format!("cat: {e}")),
                false => Fail::Bad(format!("cat {s}: {e}")),
            });
        }
        Some(_) => {}
    }
    if data.len() as u64 != t.len {
        return Err(Fail::Bad(format!(
            "cat {}: {} bytes, want {}",
            t.path,
            data.len(),
            t.len
        )));
    }
    match ctx.verify(t, 0, &data, "fuse cat") {
        true => Ok(()),
        false => Err(Fail::Wrong),
    }
}

fn ls(ctx: &Arc<Ctx>, t: &Target) -> Result<(), Fail> {
    let (root, dir) = (ctx.mnt.clone(), ctx.mnt.join(&t.ih));
    let r = bounded(BOUND, move || -> io::Result<(Vec<String>, Vec<String>)> {
        let names = |d: &Path| -> io::Result<Vec<String>> {
            fs::read_dir(d)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        };
        // The torrent's directory first: naming it adds the torrent, so the root lists it.
        let entries = names(&dir)?;
        Ok((names(&root)?, entries))
    });
    let (root, entries) = match r {
        None => {
            return Err(Fail::Hung(format!(
                "ls of {} not done within {BOUND:?}",
                t.ih
            )))
        }
        Some(Err(e)) => return Err(errno_fail("ls", &e)),
        Some(Ok(v)) => v,
    };
    let first = t.path.split('/').next().unwrap_or_default();
    if !entries.iter().any(|e| e == first) {
        return Err(Fail::Bad(format!(
            "ls {}: no {first:?} in {entries:?}",
            t.ih
        )));
    }
    // The root lists known torrents; the one just listed is known.
    if !root.contains(&t.ih) {
        return Err(Fail::Bad(format!(
            "ls of the mount: no {} in {root:?}",
            t.ih
        )));
    }
    Ok(())
}

/// A `cat` of a large file interrupted with SIGINT: it must end within 10 s.
fn interrupted(ctx: &Arc<Ctx>, rng: &mut Rng, t: &Target) -> Result<(), Fail> {
    let path = ctx.mnt.join(&t.ih).join(&t.path);
    let mut cmd = Command::new("cat");
    cmd.arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Ctrl-C reaches a foreground `cat` with SIGINT's default action. A soak started as a
    // background job of a non-interactive shell inherits SIGINT *ignored* (POSIX), and so would
    // its `cat`s: they would read to the end and be counted as hung (seen on a 30-min run).
    // SAFETY: signal() is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Fail::Bad(format!("spawning cat: {e}")))?;
    thread::sleep(Duration::from_millis(rng.range(20, 500)));
    // SAFETY: our own child, not yet reaped (it cannot have been: we have not waited).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    match wait(&mut child, Duration::from_secs(10)) {
        None => Err(Fail::Hung(format!(
            "cat {} did not end within 10 s of SIGINT",
            path.display()
        ))),
        Some(_) => Ok(()),
    }
}

pub fn readers(ctx: Arc<Ctx>, mut rng: Rng) {
    while ctx.port().is_some() {
        let t = rng.pick(&ctx.targets);
        let w = ctx.window();
        let (kind, r) = match rng.below(10) {
            0..=4 => ("fuse pread", pread(&ctx, &mut rng, t)),
            5 | 6 if t.len <= 5 << 20 => ("fuse cat", cat(&ctx, t)),
            5 | 6 => ("fuse pread", pread(&ctx, &mut rng, t)),
            7 | 8 => ("fuse ls", ls(&ctx, t)),
            _ => ("fuse interrupted cat", interrupted(&ctx, &mut rng, t)),
        };
        settle(&ctx, kind, &w, r);
        ctx.sleep(Duration::from_millis(rng.range(10, 200)));
    }
}
