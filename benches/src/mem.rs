//! The memory a server process (tree) holds, for the idle-connection measurements, and the
//! file limit a client holding thousands of connections needs.

/// VmRSS and Pss of a process, KiB.
pub fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = field(&status, "VmRSS:")?;
    let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| field(&t, "Pss:"))
        .unwrap_or(rss);
    Some((rss, pss))
}

/// The process and (with `children`) all its descendants.
pub fn process_tree(root: u32, children: bool) -> Vec<u32> {
    let mut tree = vec![root];
    if !children {
        return tree;
    }
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let Some(after) = stat.rsplit_once(')').map(|x| x.1) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == p)
                .map(|&(c, _)| c),
        );
        i += 1;
    }
    tree
}

/// VmRSS and Pss summed over the process tree, KiB, and how many processes it has.
pub fn tree_memory(pid: u32, children: bool) -> (u64, u64, usize) {
    let procs = process_tree(pid, children);
    let (mut rss, mut pss) = (0, 0);
    for p in &procs {
        if let Some((r, s)) = memory_of(*p) {
            rss += r;
            pss += s;
        }
    }
    (rss, pss, procs.len())
}

/// Lets this process hold as many sockets as the hard limit allows.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
