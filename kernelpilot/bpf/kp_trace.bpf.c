// SPDX-License-Identifier: GPL-2.0
/* kernelpilot's observer: scheduler, syscall, page-fault, mm and file-cache events
 * into one ring buffer of fixed-size records. Each program is attached on demand. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "kp_events.h"

char LICENSE[] SEC("license") = "GPL";

#ifdef KP_WITH_SECURITY
/* The agent's build: the security watch's window stage runs inside kp_sys_enter (one program on
 * sys_enter feeds both the trace batches and the security windows); its maps and exec/fork/exit
 * programs join this object. */
#include "sc_watch.h"

/* Here the stage's context is the call's first four arguments, copied to the stack (variable
 * offsets into the tracepoint's ctx are refused by the verifier). */
static __always_inline __u64 sc_arg(void *ctx, int i)
{
	return ((__u64 *)ctx)[i & 3];
}
#endif

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} kp_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kp_config);
} kp_cfg SEC(".maps");

/* The pid filter: one bit per thread id (an array lookup is inlined; a hash lookup is not).
 * User space sizes it to pid_max / 64 before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} kp_pidbits SEC(".maps");

static __always_inline int kp_pid_watched(__u32 pid)
{
	__u32 slot = pid >> 6;
	__u64 *w = bpf_map_lookup_elem(&kp_pidbits, &slot);
	return w && (*w & (1ULL << (pid & 63)));
}

static __always_inline void kp_pid_set(__u32 pid, int on)
{
	__u32 slot = pid >> 6;
	__u64 *w = bpf_map_lookup_elem(&kp_pidbits, &slot);
	if (!w)
		return;
	if (on)
		__sync_fetch_and_or(w, 1ULL << (pid & 63));
	else
		__sync_fetch_and_and(w, ~(1ULL << (pid & 63)));
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} kp_stats SEC(".maps");

static __always_inline void kp_count(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&kp_stats, &slot);
	if (v)
		*v += n;
}


static __always_inline int kp_comm_match(const char *have, const char *want)
{
	for (int i = 0; i < KP_COMM_LEN; i++) {
		if (want[i] == 0)
			return 1;
		if (have[i] != want[i])
			return 0;
	}
	return 1;
}

/* Does the filter accept thread `pid` of process `tgid` (with comm `comm`, may be NULL)? */
static __always_inline int kp_want(__u32 pid, __u32 tgid, const char *comm)
{
	__u32 k = 0;
	struct kp_config *c = bpf_map_lookup_elem(&kp_cfg, &k);
	if (!c)
		return 0;
	if (c->exclude_tgid && tgid == c->exclude_tgid)
		return 0;
	if (!(c->filter & (KP_FILTER_PIDS | KP_FILTER_CGROUP | KP_FILTER_COMM)))
		return 1;
	if ((c->filter & KP_FILTER_PIDS) && !kp_pid_watched(pid))
		return 0;
	if ((c->filter & KP_FILTER_CGROUP) && bpf_get_current_cgroup_id() != c->cgroup_id)
		return 0;
	if (c->filter & KP_FILTER_COMM) {
		char cur[KP_COMM_LEN];
		if (!comm) {
			bpf_get_current_comm(cur, sizeof(cur));
			comm = cur;
		}
		if (!kp_comm_match(comm, c->comm))
			return 0;
	}
	return 1;
}

static __always_inline struct kp_event *kp_reserve(__u16 kind)
{
	struct kp_event *e = bpf_ringbuf_reserve(&kp_ring, sizeof(*e), 0);
	if (!e) {
		kp_count(KP_STAT_DROPPED, 1);
		return 0;
	}
	e->ts = bpf_ktime_get_ns();
	e->kind = kind;
	e->cpu = bpf_get_smp_processor_id();
	e->aux = 0;
	return e;
}

/* Consumers poll in bulk, so producers never wake them up (cheaper per event). */
static __always_inline void kp_submit(struct kp_event *e)
{
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* An event about the current task, sent up at once. */
static __always_inline struct kp_event *kp_current_event(__u16 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = (__u32)id, tgid = id >> 32;
	if (!kp_want(pid, tgid, 0))
		return 0;
	struct kp_event *e = kp_reserve(kind);
	if (!e)
		return 0;
	e->pid = pid;
	e->tgid = tgid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* Batches of high-rate events per CPU, and the ring they go up in: KP_BATCH_SYS (syscalls,
 * faults) and KP_BATCH_SCHED (switches, wakeups; these run with interrupts off, inside the
 * scheduler). A program does not nest with itself or its batch's other writers on one CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KP_NBATCHES);
	__type(key, __u32);
	__type(value, struct kp_batch);
} kp_batches SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} kp_bring SEC(".maps");

/* The next free slot of this CPU's batch `k` (or 0): fill it, then kp_batch_commit(); a slot
 * filled but not committed is simply reused. */
static __always_inline struct kp_event *kp_batch_slot_of(__u32 k, struct kp_batch **bp)
{
	struct kp_batch *b = bpf_map_lookup_elem(&kp_batches, &k);
	if (!b)
		return 0;
	*bp = b;
	return &b->ev[b->n & (KP_BATCH - 1)];
}

static __always_inline struct kp_event *kp_batch_slot(struct kp_batch **bp)
{
	return kp_batch_slot_of(KP_BATCH_SYS, bp);
}

static __always_inline void kp_batch_commit(struct kp_batch *b, __u64 now)
{
	__u64 n = (b->n & (KP_BATCH - 1)) + 1;
	b->n = n;
	if (n < KP_BATCH && now - b->ev[0].ts < KP_BATCH_MAX_NS)
		return;
	if (bpf_ringbuf_output(&kp_bring, b, sizeof(*b), BPF_RB_NO_WAKEUP))
		kp_count(KP_STAT_DROPPED, n);
	b->n = 0;
}

/* A high-rate event about the current task (id: bpf_get_current_pid_tgid()), batched; comm is
 * filled in user space. */
static __always_inline struct kp_event *kp_batch_event_of(__u16 kind, __u64 id, struct kp_batch **bp)
{
	__u32 pid = (__u32)id, tgid = id >> 32;
	if (!kp_want(pid, tgid, 0))
		return 0;
	struct kp_event *e = kp_batch_slot(bp);
	if (!e)
		return 0;
	e->ts = bpf_ktime_get_ns();
	e->pid = pid;
	e->tgid = tgid;
	e->kind = kind;
	e->cpu = bpf_get_smp_processor_id();
	e->aux = 0;
	__u64 *c = (__u64 *)e->comm;
	c[0] = 0;
	c[1] = 0;
	return e;
}

static __always_inline struct kp_event *kp_batch_event(__u16 kind, struct kp_batch **bp)
{
	return kp_batch_event_of(kind, bpf_get_current_pid_tgid(), bp);
}

/* Resolve an fd of the current task to its inode's (rdev, ino). */
static __always_inline void kp_fd_inode(__s64 fd, __u64 *rdev, __u64 *ino)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **arr = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]);
	if (!f)
		return;
	*rdev = BPF_CORE_READ(f, f_inode, i_rdev);
	*ino = BPF_CORE_READ(f, f_inode, i_ino);
}

/* ---- scheduler ---- */

/* BTF-typed tracepoints: task fields are plain loads, not helper calls (the cost is per switch). */

/* A task's comm as two 8-byte loads (it is NUL-padded: strscpy_pad). */
static __always_inline void kp_comm_copy(char *dst, const char *comm)
{
	__u64 *d = (__u64 *)dst;
	const __u64 *s = (const __u64 *)comm;
	d[0] = s[0];
	d[1] = s[1];
}
SEC("tp_btf/sched_switch")
int BPF_PROG(kp_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct kp_batch *b;
	struct kp_event *e = kp_batch_slot_of(KP_BATCH_SCHED, &b);
	if (!e)
		return 0;
	__u32 prev_pid = prev->pid, next_pid = next->pid;
	__u32 prev_tgid = prev->tgid, next_tgid = next->tgid;
	kp_comm_copy(e->comm, prev->comm);
	if (!kp_want(prev_pid, prev_tgid, e->comm)) {
		char ncomm[KP_COMM_LEN];
		kp_comm_copy(ncomm, next->comm);
		if (!kp_want(next_pid, next_tgid, ncomm))
			goto out;
	}
	e->ts = bpf_ktime_get_ns();
	e->kind = KP_SCHED_SWITCH;
	e->cpu = bpf_get_smp_processor_id();
	e->pid = prev_pid;
	e->tgid = prev_tgid;
	e->a0 = next_pid;
	e->a1 = prev_state; /* 0 = still runnable (involuntary); KP_TASK_DEAD = its last switch */
	e->a2 = next_tgid;
	e->a3 = preempt;
	e->aux = prev->prio;
	kp_batch_commit(b, e->ts);
out:
	if (prev_state & KP_TASK_DEAD)
		kp_pid_set(prev_pid, 0);
	return 0;
}

/* Wakeups are batched; a new task's first wakeup goes up at once (rare, and it names the task
 * before its first batched system calls arrive). */
static __always_inline int kp_wakeup(struct task_struct *p, __u32 is_new)
{
	struct kp_batch *b = 0;
	struct kp_event *e;
	__u32 pid = p->pid, tgid = p->tgid;
	if (is_new) {
		char comm[KP_COMM_LEN];
		kp_comm_copy(comm, p->comm);
		if (!kp_want(pid, tgid, comm) || !(e = kp_reserve(KP_SCHED_WAKEUP)))
			return 0;
		__builtin_memcpy(e->comm, comm, sizeof(comm));
	} else {
		e = kp_batch_slot_of(KP_BATCH_SCHED, &b);
		if (!e)
			return 0;
		kp_comm_copy(e->comm, p->comm);
		if (!kp_want(pid, tgid, e->comm))
			return 0;
	}
	__u64 waker = bpf_get_current_pid_tgid();
	e->ts = bpf_ktime_get_ns();
	e->kind = KP_SCHED_WAKEUP;
	e->cpu = bpf_get_smp_processor_id();
	e->pid = pid;
	e->tgid = tgid;
	e->a0 = (__u32)waker;
	e->a1 = p->wake_cpu;
	e->a2 = waker >> 32;
	e->a3 = p->prio;
	e->aux = is_new;
	if (b)
		kp_batch_commit(b, e->ts);
	else
		kp_submit(e);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(kp_sched_wakeup, struct task_struct *p) { return kp_wakeup(p, 0); }

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(kp_sched_wakeup_new, struct task_struct *p) { return kp_wakeup(p, 1); }

/* ---- process lifecycle (also keeps the pid filter following children) ---- */

SEC("raw_tp/sched_process_fork")
int kp_proc_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (void *)ctx->args[0], *child = (void *)ctx->args[1];
	__u32 ppid = BPF_CORE_READ(parent, pid), cpid = BPF_CORE_READ(child, pid);
	if (kp_pid_watched(ppid))
		kp_pid_set(cpid, 1);
	struct kp_event *e = kp_current_event(KP_PROC_FORK);
	if (!e)
		return 0;
	e->a0 = cpid;
	e->a1 = BPF_CORE_READ(child, tgid);
	kp_submit(e);
	return 0;
}

SEC("tp/sched/sched_process_exit")
int kp_proc_exit(void *ctx)
{
	struct kp_event *e = kp_current_event(KP_PROC_EXIT);
	if (e) {
		struct task_struct *t = (void *)bpf_get_current_task();
		e->a0 = BPF_CORE_READ(t, exit_code);
		kp_submit(e);
	}
	__u32 k = 0;
	struct kp_config *c = bpf_map_lookup_elem(&kp_cfg, &k);
	if (!c || !(c->filter & KP_UNWATCH_AT_SWITCH))
		kp_pid_set((__u32)bpf_get_current_pid_tgid(), 0);
	return 0;
}

SEC("tp/sched/sched_process_exec")
int kp_proc_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct kp_event *e = kp_current_event(KP_PROC_EXEC);
	if (!e)
		return 0;
	e->a0 = ctx->old_pid;
	kp_submit(e);
	return 0;
}

/* ---- system calls ---- */

SEC("tp/raw_syscalls/sys_enter")
int kp_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
#ifdef KP_WITH_SECURITY
	__u64 args[4] = {ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]};
	sc_on_syscall(args, ctx->id, id);
#endif
	struct kp_batch *b;
	struct kp_event *e = kp_batch_event_of(KP_SYSCALL, id, &b);
	if (!e)
		return 0;
	e->a0 = ctx->id;
	e->a1 = ctx->args[0];
	e->a2 = ctx->args[1];
	e->a3 = ctx->args[2];
	kp_batch_commit(b, e->ts);
	return 0;
}

/* ---- memory ---- */

SEC("tp/exceptions/page_fault_user")
int kp_page_fault(struct trace_event_raw_exceptions *ctx)
{
	struct kp_batch *b;
	struct kp_event *e = kp_batch_event(KP_PAGE_FAULT, &b);
	if (!e)
		return 0;
	e->a0 = ctx->address;
	e->a1 = ctx->ip;
	e->a2 = ctx->error_code;
	e->a3 = 0;
	kp_batch_commit(b, e->ts);
	return 0;
}

SEC("tp/syscalls/sys_enter_mmap")
int kp_mmap(struct trace_event_raw_sys_enter *ctx)
{
	struct kp_event *e = kp_current_event(KP_MMAP);
	if (!e)
		return 0;
	__s64 fd = (__s32)ctx->args[4];
	__u64 rdev = 0, ino = 0;
	if (fd >= 0)
		kp_fd_inode(fd, &rdev, &ino);
	e->aux = (__u32)fd;
	e->a0 = ctx->args[1];                               /* length */
	e->a1 = (ctx->args[2] & 0xffffffff) | (ctx->args[3] << 32); /* prot | flags << 32 */
	e->a2 = rdev;
	e->a3 = ino;
	kp_submit(e);
	return 0;
}

SEC("tp/syscalls/sys_enter_munmap")
int kp_munmap(struct trace_event_raw_sys_enter *ctx)
{
	struct kp_event *e = kp_current_event(KP_MUNMAP);
	if (!e)
		return 0;
	e->a0 = ctx->args[0];
	e->a1 = ctx->args[1];
	kp_submit(e);
	return 0;
}

SEC("tp/syscalls/sys_enter_ioctl")
int kp_ioctl(struct trace_event_raw_sys_enter *ctx)
{
	struct kp_event *e = kp_current_event(KP_IOCTL);
	if (!e)
		return 0;
	__s64 fd = (__s32)ctx->args[0];
	__u64 rdev = 0, ino = 0;
	kp_fd_inode(fd, &rdev, &ino);
	e->aux = (__u32)fd;
	e->a0 = ctx->args[1] & 0xffffffff; /* cmd */
	e->a1 = ctx->args[2];              /* arg */
	e->a2 = rdev;
	e->a3 = ino;
	kp_submit(e);
	return 0;
}

/* ---- page cache (file reads) ---- */

SEC("tp/filemap/mm_filemap_get_pages")
int kp_file_read(struct trace_event_raw_mm_filemap_op_page_cache_range *ctx)
{
	struct kp_event *e = kp_current_event(KP_FILE_READ);
	if (!e)
		return 0;
	e->a0 = ctx->i_ino;
	e->a1 = ctx->index;
	e->a2 = ctx->last_index;
	e->a3 = ctx->s_dev;
	kp_submit(e);
	return 0;
}

SEC("tp/filemap/mm_filemap_add_to_page_cache")
int kp_file_miss(struct trace_event_raw_mm_filemap_op_page_cache *ctx)
{
	struct kp_event *e = kp_current_event(KP_FILE_MISS);
	if (!e)
		return 0;
	e->a0 = ctx->i_ino;
	e->a1 = ctx->index;
	e->a2 = ctx->order;
	e->a3 = ctx->s_dev;
	kp_submit(e);
	return 0;
}

SEC("tp/filemap/mm_filemap_fault")
int kp_file_fault(struct trace_event_raw_mm_filemap_fault *ctx)
{
	struct kp_event *e = kp_current_event(KP_FILE_FAULT);
	if (!e)
		return 0;
	e->a0 = ctx->i_ino;
	e->a1 = ctx->index;
	e->a3 = ctx->s_dev;
	kp_submit(e);
	return 0;
}
