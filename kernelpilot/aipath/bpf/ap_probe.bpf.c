// SPDX-License-Identifier: GPL-2.0
/* aipath's probe: ioctls on device files (named later from the first bytes of their argument),
 * the time in each, and uprobes on user-space runtime functions (calls, bytes, time inside, per
 * phase). Only the processes in ap_tgids (and their children) are seen. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ap_probe.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} ap_tgids SEC(".maps");

struct {  /* device majors whose ioctl arguments are copied */
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} ap_copy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct ap_ioctl);
} ap_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} ap_ring SEC(".maps");

struct {  /* [0]: markers seen (the current phase), [1]: ioctl records dropped */
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} ap_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);  /* tid << 32 | function */
	__type(value, struct ap_ustart);
} ap_ustarts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct ap_ukey);
	__type(value, struct ap_ustat);
} ap_ustats SEC(".maps");

static __always_inline int ap_watched(__u32 tgid)
{
	return bpf_map_lookup_elem(&ap_tgids, &tgid) != 0;
}

static __always_inline __u64 *ap_slot(__u32 k)
{
	return bpf_map_lookup_elem(&ap_state, &k);
}

SEC("raw_tp/sched_process_fork")
int ap_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (void *)ctx->args[0], *child = (void *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid), ctgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;
	if (ptgid != ctgid && ap_watched(ptgid))
		bpf_map_update_elem(&ap_tgids, &ctgid, &one, BPF_ANY);
	return 0;
}

/* A phase marker: getpid(MAGIC, name...) moves every watched thread to the next phase. (The
 * sys_enter_getpid tracepoint carries no arguments, so this looks at every syscall's number.) */
SEC("raw_tp/sys_enter")
int ap_marker(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] != 39) /* __NR_getpid */
		return 0;
	struct pt_regs *regs = (void *)ctx->args[0];
	if (BPF_CORE_READ(regs, di) != AP_MARK_MAGIC || !ap_watched(bpf_get_current_pid_tgid() >> 32))
		return 0;
	__u64 *phase = ap_slot(0);
	if (phase)
		__sync_fetch_and_add(phase, 1);
	return 0;
}

SEC("tp/syscalls/sys_enter_ioctl")
int ap_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	if (!ap_watched(tgid))
		return 0;
	__s64 fd = (__s32)ctx->args[0];
	struct task_struct *t = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **arr = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), &arr[fd]);
	if (!f)
		return 0;
	__u64 rdev = BPF_CORE_READ(f, f_inode, i_rdev);
	if (!rdev)
		return 0; /* not a device file */
	struct ap_ioctl rec = {};
	rec.ts = bpf_ktime_get_ns();
	rec.pid = tid;
	rec.tgid = tgid;
	rec.cmd = ctx->args[1];
	rec.fd = fd;
	rec.rdev = rdev;
	rec.ino = BPF_CORE_READ(f, f_inode, i_ino);
	rec.mode = BPF_CORE_READ(f, f_inode, i_mode);
	__u32 major = rdev >> 20;
	if (bpf_map_lookup_elem(&ap_copy, &major) && ctx->args[2])
		bpf_probe_read_user(rec.arg, sizeof(rec.arg), (void *)ctx->args[2]);
	bpf_map_update_elem(&ap_inflight, &tid, &rec, BPF_ANY);
	return 0;
}

SEC("tp/syscalls/sys_exit_ioctl")
int ap_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ap_ioctl *rec = bpf_map_lookup_elem(&ap_inflight, &tid);
	if (!rec)
		return 0;
	struct ap_ioctl *e = bpf_ringbuf_reserve(&ap_ring, sizeof(*e), 0);
	if (e) {
		__builtin_memcpy(e, rec, sizeof(*e));
		e->dur_ns = bpf_ktime_get_ns() - rec->ts;
		e->ret = ctx->ret;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	} else {
		__u64 *lost = ap_slot(1);
		if (lost)
			__sync_fetch_and_add(lost, 1);
	}
	bpf_map_delete_elem(&ap_inflight, &tid);
	return 0;
}

/* Argument i (1-5) of the probed call; 1 for none. The registers are read at fixed offsets first
 * (the verifier refuses a variable offset into the context). */
static __always_inline __u64 ap_arg(struct pt_regs *ctx, __u32 i)
{
	__u64 r[5];
	r[0] = PT_REGS_PARM1(ctx);
	r[1] = PT_REGS_PARM2(ctx);
	r[2] = PT_REGS_PARM3(ctx);
	r[3] = PT_REGS_PARM4(ctx);
	r[4] = PT_REGS_PARM5(ctx);
	__u32 j = i - 1;
	if (j >= 5)
		return 1;
	return r[j];
}

SEC("uprobe")
int ap_uentry(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!ap_watched(id >> 32))
		return 0;
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 func = cookie & 0xffff, a = (cookie >> 16) & 0xff, b = (cookie >> 24) & 0xff;
	__u64 *phase = ap_slot(0);
	struct ap_ustart s = {};
	s.ts = bpf_ktime_get_ns();
	s.phase = phase ? *phase : 0;
	s.bytes = a ? ap_arg(ctx, a) * (b ? ap_arg(ctx, b) : 1) : 0;
	struct ap_ukey k = {.func = func, .phase = s.phase};
	struct ap_ustat *st = bpf_map_lookup_elem(&ap_ustats, &k);
	if (!st) {
		struct ap_ustat zero = {};
		bpf_map_update_elem(&ap_ustats, &k, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&ap_ustats, &k);
		if (!st)
			return 0;
	}
	st->calls += 1;
	st->bytes += s.bytes;
	__u64 key = (id << 32) | func;
	bpf_map_update_elem(&ap_ustarts, &key, &s, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int ap_uret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 key = (id << 32) | (bpf_get_attach_cookie(ctx) & 0xffff);
	struct ap_ustart *s = bpf_map_lookup_elem(&ap_ustarts, &key);
	if (!s)
		return 0;
	struct ap_ukey k = {.func = key & 0xffff, .phase = s->phase};
	struct ap_ustat *st = bpf_map_lookup_elem(&ap_ustats, &k);
	if (st) {
		st->returns += 1;
		st->ns += bpf_ktime_get_ns() - s->ts;
	}
	bpf_map_delete_elem(&ap_ustarts, &key);
	return 0;
}
