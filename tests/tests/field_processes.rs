//! The field failures of issue 12 are what they claim to be, read back
//! from `/proc` the way the emitter reads them: state letter, `wchan`, fd
//! kinds and modes, and the kernel's TCP state. Each prints the `wchan`
//! this kernel uses (`--nocapture`), the names the diagnosis matches on.

use e2e::field::{self, FieldProc};

/// `Some(case)` when the tools are there; `None` (the test returns) outside CI.
fn spawn(f: fn() -> anyhow::Result<FieldProc>) -> Option<FieldProc> {
    if !field::tools_present() {
        return None;
    }
    Some(f().unwrap_or_else(|e| panic!("spawning: {e:#}")))
}

fn report(p: &FieldProc) {
    println!(
        "{}: pid {} state {:?} wchan {:?}",
        p.what(),
        p.pid(),
        field::state(p.pid()),
        field::wchan(p.pid())
    );
}

#[test]
fn dead_pid_names_no_process() {
    let Some(p) = spawn(field::dead_pid) else {
        return;
    };
    assert!(!field::exists(p.pid()), "pid {} still exists", p.pid());
    assert_eq!(field::state(p.pid()), None);
    println!("dead pid: {} (no /proc entry)", p.pid());
}

#[test]
fn zombie_is_z_and_its_parent_never_waits() {
    let Some(p) = spawn(field::zombie) else {
        return;
    };
    report(&p);
    assert!(field::exists(p.pid()), "a zombie still has a /proc entry");
    assert_eq!(field::state(p.pid()), Some('Z'));
    // A zombie has no wchan and no fds to read.
    assert_eq!(field::wchan(p.pid()), None);
    let parent = p.related.expect("the parent");
    assert_eq!(field::comm(parent).as_deref(), Some("sleep"));
    assert_eq!(field::state(parent), Some('S'));
    assert!(field::children(parent).contains(&p.pid()));
}

#[test]
fn cat_blocks_reading_a_pipe_on_stdin() {
    let Some(p) = spawn(field::stdin_pipe) else {
        return;
    };
    report(&p);
    assert_eq!(field::state(p.pid()), Some('S'));
    let wchan = field::wchan(p.pid()).unwrap_or_default();
    assert!(
        wchan.contains("pipe_read") || wchan.starts_with("pipe_wait"),
        "{wchan}"
    );
    let stdin = field::fd_target(p.pid(), 0).unwrap_or_default();
    assert!(stdin.starts_with("pipe:["), "{stdin}");
    assert_eq!(
        field::fd_flags(p.pid(), 0).map(|f| f & 3),
        Some(0),
        "O_RDONLY"
    );
}

#[test]
fn client_holds_a_connection_its_peer_closed_in_close_wait() {
    let Some(p) = spawn(field::close_wait) else {
        return;
    };
    report(&p);
    let fd = p.socket_fd.expect("the socket's fd");
    let target = field::fd_target(p.pid(), fd).unwrap_or_default();
    assert!(target.starts_with("socket:["), "{target}");
    assert_eq!(
        field::fd_flags(p.pid(), fd).map(|f| f & 3),
        Some(2),
        "O_RDWR"
    );
    assert_eq!(field::tcp_state(p.pid(), fd).as_deref(), Some("08"));
    assert_eq!(field::tcp_remote(p.pid(), fd), p.remote);
    // It stays there: the client never reads nor closes.
    assert_eq!(field::state(p.pid()), Some('S'));
    println!("CLOSE_WAIT: fd {fd} -> {target}, remote {:?}", p.remote);
}

#[test]
fn shell_waits_for_its_sleeping_child() {
    let Some(p) = spawn(field::waiting_for_child) else {
        return;
    };
    report(&p);
    let wchan = field::wchan(p.pid()).unwrap_or_default();
    assert!(wchan == "do_wait" || wchan.contains("wait4"), "{wchan}");
    let child = p.related.expect("the child");
    assert_eq!(field::comm(child).as_deref(), Some("sleep"));
    assert_eq!(field::state(child), Some('S'));
    assert_eq!(p.leader_pid(), Some(p.pid()));
    println!(
        "waiting for child: child {child} wchan {:?}",
        field::wchan(child)
    );
}

#[test]
fn sigstop_leaves_the_process_stopped() {
    let Some(p) = spawn(field::stopped) else {
        return;
    };
    report(&p);
    assert_eq!(field::state(p.pid()), Some('T'));
    assert_eq!(field::comm(p.pid()).as_deref(), Some("sleep"));
}

#[test]
fn guards_kill_what_they_started() {
    if !field::tools_present() {
        return;
    }
    let sh = field::waiting_for_child().expect("spawn");
    let (pid, child) = (sh.pid(), sh.related.expect("child"));
    let cat = field::stdin_pipe().expect("spawn");
    let cat_pid = cat.pid();
    drop(sh);
    drop(cat);
    for pid in [pid, child, cat_pid] {
        field::wait_for("the process to be gone", || {
            (!e2e::procs::alive(pid)).then_some(())
        })
        .unwrap_or_else(|e| panic!("pid {pid}: {e}"));
    }
}

/// The column is the network-order bytes read as a native u32.
#[cfg(target_endian = "little")]
#[test]
fn tcp4_addresses_read_as_the_kernel_prints_them() {
    assert_eq!(
        field::tcp4_addr("0100007F:9B8A")
            .expect("valid")
            .to_string(),
        "127.0.0.1:39818"
    );
    assert!(field::tcp4_addr("zz:1").is_err());
    assert!(field::tcp4_addr("0100007F").is_err());
}
