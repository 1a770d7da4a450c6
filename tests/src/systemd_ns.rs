//! A real systemd, booted as PID 1 of a new PID + mount namespace, so the
//! shipped units can be run by the engine they are written for.
//!
//! Why each step of the boot script is there:
//! - `unshare --fork --pid --mount --mount-proc`: systemd refuses to run as
//!   the system manager unless it is PID 1; the mount namespace keeps every
//!   mount below private (unshare makes propagation private).
//! - private tmpfs over `/tmp`, `/var/tmp`, `/run`, `/var/log` and
//!   `/var/lib`: at boot `systemd-tmpfiles` empties `/tmp` (and may clean
//!   `/var/tmp`) of whatever filesystem it sees, journald writes under
//!   `/var/log`, and `DynamicUser=`/`StateDirectory=` write under `/var/lib`.
//!   None of that may reach the shared host.
//! - `/etc` becomes an overlay whose upper layer is a tmpfs: the units, the
//!   env files, the `orchestrator` user and `/etc/watchdog` exist only in
//!   the namespace's view; the host's `/etc` never changes. The host's
//!   enabled services (`/etc/systemd/system/*.wants`) are hidden under a
//!   private `/etc/systemd/system`.
//! - units that change the shared kernel (sysctl, binfmt, modules) or
//!   remount the root are masked.
//! - a cgroup of its own (`e2e-<root dir name>` in the `name=systemd` and
//!   unified hierarchies): systemd in a container builds its tree below the
//!   cgroup it starts in, so two booted machines never share a
//!   `system.slice`, and the whole tree is removed after the poweroff.
//! - `setpriv --pdeathsig KILL`: if the test process (and with it
//!   `unshare`) is killed outright, systemd dies too instead of lingering.
//!
//! Everything the test owns (binaries, the state database, configs) lives
//! in `root`, a directory outside the paths above (under the target dir),
//! bind-mounted to where the units expect it. [`Booted`] powers the machine
//! off with `SIGRTMIN+4` on drop, and `SIGKILL`s it after a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::Proc;

/// Units that must not run in a namespace sharing the host's kernel and
/// root filesystem: they would change global kernel state or remount `/`.
/// Masked (linked to `/dev/null`) in the namespace's `/etc/systemd/system`.
pub const MASKED: &[&str] = &[
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-remount-fs.service",
    "systemd-sysusers.service",
    "systemd-pstore.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-hwdb-update.service",
    "systemd-update-utmp.service",
    "systemd-tmpfiles-clean.timer",
    "ldconfig.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
];

/// The boot target: the basic system (journald included) and nothing the
/// host has enabled; the test starts its units itself.
const BOOT_TARGET: &str = "[Unit]\nDescription=e2e boot target\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n";

const BOOT_SCRIPT: &str = r#"set -eu
R="$1"
CG="$2"
# A cgroup of its own in the hierarchies systemd manages, so its init.scope
# and system.slice live below it: apart from any other booted systemd, and
# removed as a whole after the poweroff.
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
  if [ -f "$h/cgroup.procs" ]; then
    mkdir -p "$h/$CG"
    echo $$ > "$h/$CG/cgroup.procs"
  fi
done
for d in /tmp /var/tmp /run /var/log /var/lib; do
  mount -t tmpfs -o mode=0755 e2e-tmpfs "$d"
done
chmod 1777 /tmp /var/tmp
mount -t tmpfs e2e-etc "$R/etc-layer"
mkdir "$R/etc-layer/upper" "$R/etc-layer/work"
mount -t overlay e2e-etc -o lowerdir=/etc,upperdir="$R/etc-layer/upper",workdir="$R/etc-layer/work" /etc
# Never write into the host's /etc: stop unless /etc is the overlay now.
[ "$(findmnt -n -o FSTYPE /etc)" = overlay ]
mount -t tmpfs -o mode=0755 e2e-units /etc/systemd/system
cp -a "$R/units/." /etc/systemd/system/
mkdir -p /etc/watchdog /etc/default /var/lib/orchestrator
mount --bind "$R/etc-watchdog" /etc/watchdog
mount --bind "$R/orch" /var/lib/orchestrator
mount --bind "$R/bin" /usr/local/bin
cp "$R/default/"* /etc/default/
echo "orchestrator:x:990:990:e2e orchestrator:/nonexistent:/usr/sbin/nologin" >> /etc/passwd
echo "orchestrator:x:990:" >> /etc/group
exec setpriv --pdeathsig KILL env container=other /lib/systemd/systemd --system --unit=e2e.target
"#;

/// What a booted machine is made of, prepared in `root` before the boot.
#[derive(Debug)]
pub struct Layout {
    /// The directory holding everything below (outside /tmp, /run, ...).
    pub root: PathBuf,
    /// The cgroup (one path in every hierarchy) systemd starts in.
    pub cgroup: String,
}

impl Layout {
    /// Creates the directories under `root`, copies `bins` (seen as
    /// `/usr/local/bin/<name>`), writes each `(name, text)` of `units` into
    /// the namespace's `/etc/systemd/system` (a `name` may hold a `/` for
    /// drop-ins) and each of `defaults` into `/etc/default`.
    pub fn prepare(
        root: &Path,
        bins: &[(&str, &Path)],
        units: &[(&str, &str)],
        defaults: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        for d in [
            "etc-layer",
            "units",
            "etc-watchdog",
            "orch",
            "bin",
            "default",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // The emitter (User=orchestrator) must read the database and its WAL files.
        set_mode(&root.join("orch"), 0o755)?;
        set_mode(&root.join("etc-watchdog"), 0o755)?;
        for (name, src) in bins {
            let dst = root.join("bin").join(name);
            std::fs::copy(src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
            set_mode(&dst, 0o755)?;
        }
        let unit_dir = root.join("units");
        for (name, text) in units {
            let path = unit_dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
        }
        std::fs::write(unit_dir.join("e2e.target"), BOOT_TARGET)?;
        for name in MASKED {
            std::os::unix::fs::symlink("/dev/null", unit_dir.join(name))?;
        }
        for (name, text) in defaults {
            std::fs::write(root.join("default").join(name), text)?;
        }
        std::fs::write(root.join("boot.sh"), BOOT_SCRIPT)?;
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            root: root.to_owned(),
            cgroup: format!("e2e-{name}-{}", std::process::id()),
        })
    }

    /// The host path of the namespace's `/etc/watchdog`.
    pub fn etc_watchdog(&self) -> PathBuf {
        self.root.join("etc-watchdog")
    }

    /// The host path of the namespace's `/var/lib/orchestrator`.
    pub fn orch_dir(&self) -> PathBuf {
        self.root.join("orch")
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Why systemd cannot be booted here, if it cannot: not root, or a tool
/// missing. `None` when it is worth trying.
pub fn unsupported() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root (unshare --pid --mount needs it)".into());
    }
    for tool in ["/lib/systemd/systemd"] {
        if !Path::new(tool).is_file() {
            return Some(format!("{tool} is missing (apt-get install systemd)"));
        }
    }
    for tool in ["unshare", "nsenter", "setpriv", "findmnt", "timeout"] {
        if crate::tools::which(tool).is_none() {
            return Some(format!("`{tool}` is missing (apt-get install util-linux)"));
        }
    }
    None
}

/// A systemd running as PID 1 of its own namespaces.
#[derive(Debug)]
pub struct Booted {
    /// `unshare`, the parent of systemd.
    unshare: Proc,
    /// systemd's pid as the host sees it.
    pid: u32,
    /// systemd's own console output.
    pub console: PathBuf,
    /// Its cgroup, removed after the poweroff.
    cgroup: String,
}

impl Booted {
    /// Boots `layout` and waits (up to `limit`) until systemd reports the
    /// boot finished (`running` or `degraded`).
    pub fn boot(layout: &Layout, limit: Duration) -> anyhow::Result<Self> {
        sweep_stale_cgroups();
        let console = layout.root.join("console.log");
        let out = std::fs::File::create(&console)?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--fork", "--pid", "--mount", "--mount-proc", "/bin/sh"])
            .arg(layout.root.join("boot.sh"))
            .arg(&layout.root)
            .arg(&layout.cgroup)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let mut unshare = Proc::spawn("unshare", &mut cmd)?;
        let tail = |console: &Path| crate::stack::tail(console);
        let pid = crate::net::wait_for(
            "systemd to start in the namespace",
            limit,
            Duration::from_millis(50),
            || {
                if let Ok(Some(status)) = unshare.try_wait() {
                    return Err(format!("unshare exited with {status}"));
                }
                let child = first_child(unshare.pid()).ok_or("no child yet")?;
                let comm = std::fs::read_to_string(format!("/proc/{child}/comm"))
                    .map_err(|e| e.to_string())?;
                if comm.trim() == "systemd" {
                    Ok(child)
                } else {
                    Err(format!("child {child} is {}", comm.trim()))
                }
            },
        )
        .with_context(|| format!("console:\n{}", tail(&console)))?;
        let booted = Self {
            unshare,
            pid,
            console,
            cgroup: layout.cgroup.clone(),
        };
        let state = crate::net::wait_for(
            "systemd to finish booting",
            limit,
            Duration::from_millis(200),
            || {
                let out = booted
                    .run(&["systemctl", "is-system-running"])
                    .map_err(|e| e.to_string())?;
                let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                match state.as_str() {
                    "running" | "degraded" => Ok(state),
                    _ => Err(state),
                }
            },
        )
        .with_context(|| format!("console:\n{}", tail(&booted.console)))?;
        if state == "degraded" {
            let failed = booted.sh("systemctl --failed --no-pager --plain")?;
            eprintln!("note: the namespace's systemd booted degraded:\n{failed}");
        }
        Ok(booted)
    }

    /// systemd's pid on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs `argv` inside the namespaces (`nsenter -a`), with a 60 s cap.
    pub fn run(&self, argv: &[&str]) -> anyhow::Result<Output> {
        let pid = self.pid.to_string();
        let out = Command::new("timeout")
            .args(["60", "nsenter", "-t", &pid, "-a"])
            .args(argv)
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("nsenter {argv:?}"))?;
        Ok(out)
    }

    /// Runs a shell command inside; its stdout, or an error with both streams
    /// when it fails.
    pub fn sh(&self, script: &str) -> anyhow::Result<String> {
        let out = self.run(&["/bin/sh", "-c", script])?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "`{script}` failed with {}:\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }

    /// `systemctl show -p PROP --value UNIT`.
    pub fn prop(&self, unit: &str, prop: &str) -> anyhow::Result<String> {
        Ok(self
            .sh(&format!("systemctl show -p {prop} --value {unit}"))?
            .trim()
            .to_owned())
    }

    /// The unit's journal, messages only.
    pub fn journal(&self, unit: &str) -> String {
        self.sh(&format!("journalctl -u {unit} -o cat --no-pager"))
            .unwrap_or_else(|e| format!("(journalctl failed: {e:#})"))
    }

    /// Powers off: `SIGRTMIN+4` (systemd's clean poweroff), then `SIGKILL`
    /// after `grace`. Returns whether the clean poweroff finished in time.
    pub fn poweroff(&mut self, grace: Duration) -> bool {
        let rtmin4 = libc::SIGRTMIN() + 4;
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.pid as libc::pid_t, rtmin4) };
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if matches!(self.unshare.try_wait(), Ok(Some(_))) {
                remove_cgroups(&self.cgroup);
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above. Killing PID 1 of the namespace kills all of it.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        let _ = self.unshare.kill();
        remove_cgroups(&self.cgroup);
        false
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if crate::procs::alive(self.pid) {
            self.poweroff(Duration::from_secs(20));
        }
    }
}

/// Removes `name` and everything below it from every cgroup hierarchy
/// (empty cgroups only: rmdir refuses one that still holds a process).
fn remove_cgroups(name: &str) {
    fn remove_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if name.is_empty() || name.contains('/') {
        return;
    }
    let base = Path::new("/sys/fs/cgroup");
    remove_tree_if(base.join(name), remove_tree);
    if let Ok(hierarchies) = std::fs::read_dir(base) {
        for h in hierarchies.flatten() {
            remove_tree_if(h.path().join(name), remove_tree);
        }
    }
}

/// Removes the cgroups of earlier runs whose test process is gone (one
/// killed outright takes systemd with it, through the death signal, but
/// cannot remove its cgroup).
fn sweep_stale_cgroups() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup/systemd") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix("e2e-")
            .and_then(|rest| rest.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !crate::procs::alive(owner) {
            remove_cgroups(&name);
        }
    }
}

fn remove_tree_if(dir: PathBuf, remove: fn(&Path)) {
    if dir.is_dir() {
        remove(&dir);
    }
}

/// The first child of `pid` (unshare has exactly one: the namespace's PID 1).
fn first_child(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The exposure score `systemd-analyze security UNIT` prints on its last
/// line ("Overall exposure level for UNIT: 1.7 OK").
pub fn exposure(report: &str) -> Option<f64> {
    report
        .lines()
        .rev()
        .find(|l| l.contains("Overall exposure level"))?
        .rsplit_once(':')?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_reads_the_overall_line() {
        let report = "  ✓ SystemCallFilter=~@swap  ...\n\n→ Overall exposure level for watchdog.service: 1.7 OK 🙂\n";
        assert_eq!(exposure(report), Some(1.7));
        assert_eq!(exposure("nothing here"), None);
    }
}
