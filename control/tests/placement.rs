//! Where the engine's control thread may run. In a test binary of its own: the
//! thread is found by name, and no other engine may run in the process.

mod common;

use std::time::{Duration, Instant};

use common::builder;

/// The CPU list the kernel allows a thread of this process named `name`.
fn cpus_allowed(name: &str) -> Option<String> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned());
        }
    }
    None
}

/// Expands a kernel CPU list ("0-2,5") into core numbers.
fn cpu_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

#[test]
fn the_control_thread_keeps_off_the_pinned_workers_cores() {
    let process = cpu_list(&std::fs::read_to_string("/proc/self/status").map_or(
        String::new(),
        |s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap_or("")
                .trim()
                .to_owned()
        },
    ));
    let worker_core = *process.last().expect("at least one allowed core");
    let e = builder(10)
        .workers(1, vec![worker_core])
        .start()
        .expect("engine starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    let control = loop {
        if let Some(c) = cpus_allowed("rtp-control") {
            break cpu_list(&c);
        }
        assert!(Instant::now() < deadline, "no rtp-control thread");
        std::thread::sleep(Duration::from_millis(10));
    };
    if process.len() > 1 {
        assert!(
            !control.contains(&worker_core),
            "control thread allowed on the worker's core {worker_core}: {control:?}"
        );
        let others: Vec<usize> = process.into_iter().filter(|&c| c != worker_core).collect();
        assert_eq!(control, others, "every other core stays allowed");
    } else {
        // One core: nowhere else to go; the set is left as it was.
        assert_eq!(control, process);
    }
    drop(e);
}
