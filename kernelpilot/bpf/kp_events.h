/* One fixed-size record for every event kernelpilot observes (72 bytes).
 * Mirrored by kernelpilot.traces.schema.EVENT_DTYPE: change both together. */
#ifndef KP_EVENTS_H
#define KP_EVENTS_H

#define KP_COMM_LEN 16

struct kp_event {
	__u64 ts;      /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u32 pid;     /* thread id */
	__u32 tgid;    /* process id */
	__u16 kind;    /* enum kp_kind */
	__u16 cpu;
	__u32 aux;     /* kind-specific small field (fd, flags) */
	__u64 a0, a1, a2, a3; /* kind-specific arguments, see schema.py */
	char comm[KP_COMM_LEN];
};

enum kp_kind {
	KP_SCHED_SWITCH = 1,
	KP_SCHED_WAKEUP = 2,
	KP_PROC_FORK = 3,
	KP_PROC_EXIT = 4,
	KP_PROC_EXEC = 5,
	KP_SYSCALL = 6,
	KP_PAGE_FAULT = 7,
	KP_MMAP = 8,
	KP_MUNMAP = 9,
	KP_IOCTL = 10,
	KP_FILE_READ = 11,
	KP_FILE_MISS = 12,
	KP_FILE_FAULT = 13,
};

/* Filter bits in kp_config.filter; all set bits must match. */
#define KP_FILTER_PIDS   1  /* thread id in kp_pids (children are added at fork) */
#define KP_FILTER_CGROUP 2  /* current cgroup v2 id == cgroup_id */
#define KP_FILTER_COMM   4  /* current comm starts with comm */
/* Not a filter: a watched thread leaves the pid filter at its last switch-out (so that switch
 * is recorded) instead of at exit. Set when sched_switch is attached. */
#define KP_UNWATCH_AT_SWITCH 8
#define KP_TASK_DEAD 0x80

struct kp_config {
	__u32 filter;
	__u32 exclude_tgid; /* never record this process (the recorder itself); 0 = none */
	__u64 cgroup_id;
	char comm[KP_COMM_LEN];
};

/* High-rate events (syscalls, page faults, switches, wakeups) are gathered per CPU and sent up
 * in batches: one ring-buffer record per KP_BATCH events, or sooner when the oldest waited
 * KP_BATCH_MAX_NS. Each CPU has one batch per group of kinds (keys of kp_batches). */
#define KP_BATCH 32
#define KP_BATCH_MAX_NS 20000000ULL
#define KP_BATCH_SYS 0   /* syscalls, page faults */
#define KP_BATCH_SCHED 1 /* sched_switch, sched_wakeup(_new) */
#define KP_NBATCHES 2

struct kp_batch {
	__u64 n;                      /* valid events in ev[] */
	struct kp_event ev[KP_BATCH];
};

/* kp_stats slots (per-CPU counters) */
#define KP_STAT_DROPPED 0
#define KP_STAT_EMITTED 1
#define KP_STAT_FILTERED 2

#endif
