//! Loading and unloading kernel modules in the guest (busybox insmod/rmmod), with the
//! parameters /init used, so a test can put the guest back the way it found it.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Parameters /init passed to `name` (from /etc/heapland/modules), or "".
pub fn boot_params(name: &str) -> String {
    fs::read_to_string("/etc/heapland/modules")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(2, ' ');
            (it.next() == Some(name)).then(|| it.next().unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default()
}

/// Adds `param` to the module's line of /etc/heapland/modules, so that reloads
/// (`boot_params`) keep what a test configured at run time.
pub fn keep_param(name: &str, param: &str) -> Result<(), String> {
    const LIST: &str = "/etc/heapland/modules";
    let text = fs::read_to_string(LIST).map_err(|e| format!("{LIST}: {e}"))?;
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.split_whitespace().next() {
            Some(n) if n == name && !l.split_whitespace().any(|w| w == param) => {
                format!("{l} {param}")
            }
            _ => l.to_owned(),
        })
        .collect();
    fs::write(LIST, out.join("\n") + "\n").map_err(|e| format!("{LIST}: {e}"))
}

pub fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module")
        .join(name)
        .join("initstate")
        .exists()
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// insmod /lib/modules/<name>.ko with space-separated `params`.
pub fn insmod(name: &str, params: &str) -> Result<(), String> {
    let path = format!("/lib/modules/{name}.ko");
    let mut args = vec![path.as_str()];
    args.extend(params.split_whitespace());
    run("insmod", &args)
}

/// rmmod <name>; Err carries rmmod's message (e.g. the kernel's EBUSY/EAGAIN).
pub fn rmmod(name: &str) -> Result<(), String> {
    run("rmmod", &[name])
}
