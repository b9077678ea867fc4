//! Thread priorities.

/// Run the calling thread only on CPU time that other threads leave idle (`SCHED_IDLE`; nice
/// 19 where that is refused). Dispatch, delivery and their storage run so: under a burst,
/// storing and answering the sender comes first, and the durable work behind it catches up
/// after. Under a load below capacity there is idle time, so nothing waits for long.
pub fn background() {
    #[cfg(target_os = "linux")]
    // Safety: sched_setscheduler has no memory effects; pid 0 names the calling thread.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}
