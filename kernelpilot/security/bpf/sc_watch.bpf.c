// SPDX-License-Identifier: GPL-2.0
/* In-kernel first stage of `kpilot security watch`.
 *
 * Per process (state in task storage on the thread-group leader) a sliding window of the last
 * SC_WIN syscalls. Each call adds its feature bits to packed running sums and removes those of
 * the call leaving the window (two adds, no loop). Features, as kernelpilot/security/features.py:
 *   0 novel 3-gram (bit in a 2^20-bit table of normal 3-grams, Fibonacci hash of vocabulary ids)
 *   1 rare call, 2..8 syscall classes (exec, net, cred, fsmod, proc, mem, fd).
 * Every SC_STRIDE calls (and at exit_group) the window is scored by the kernelize map interpreter
 * (kp_tree_map.h: the tree is data in kp_model_slots); windows over the threshold go up the ring
 * buffer with their last SC_CTX syscalls (the window and its context). Per syscall: one task-storage get, two inlined array lookups. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kp_tree_map.h"

char LICENSE[] SEC("license") = "GPL";

#define SC_WIN 32
#define SC_STRIDE 8
#define SC_CTX 64   /* calls kept and sent: the window plus its context for stage 2 */
#define SC_NFEAT 9
#define SC_FBITS 6
#define SC_MAXNR 512
#define SC_GRAM_BITS 20
#define SC_NR_EXIT_GROUP 231
/* After a window goes up, the process stays quiet for 2 ms: a flood sends at most 500 windows a
 * second, while an attack phase of a few ms still sends several (a quiet counted in calls once
 * spent itself on a startup window stage 2 dismissed and hid the attack that followed). */
#define SC_QUIET_NS 2000000ull

struct sc_cfg { __u32 exclude_tgid; __s32 threshold; __u32 enabled; __u32 vmod; };
/* per syscall number: the packed feature increment (rare + classes) and the vocabulary id */
struct sc_nrinfo { __u64 spread; __u32 vid; __u32 pad; };
struct sc_proc {
	__u64 sums;                 /* SC_NFEAT fields of SC_FBITS bits */
	__u64 quiet_until;          /* ktime: bounds what one process (a flood) can send up */
	__u32 count;
	__u16 prev1, prev2;         /* vocabulary id + 1 of the last two calls, 0 = none */
	__u64 ring_spread[SC_WIN];  /* what each call in the window added to sums */
	__u16 ring_nr[SC_CTX];
};
struct sc_alert { __u64 ts; __u64 cgroup; __u32 pid, tgid; __u32 count; __s32 score; __u16 feats[12];
		  __u16 calls[SC_CTX]; char comm[16]; };
struct sc_feat { __s32 x[KP_MAX_FEATURES]; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct sc_cfg); } sc_cfg SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, SC_MAXNR); __type(key, __u32); __type(value, struct sc_nrinfo); } sc_nrinfo SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1 << (SC_GRAM_BITS - 6)); __type(key, __u32); __type(value, __u64); } sc_grams SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, int); __type(value, struct sc_proc); } sc_state SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct sc_feat); } sc_scratch SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } sc_alerts SEC(".maps");
/* 0 syscalls seen, 1 windows scored, 2 windows sent up, 3 windows dropped (ring full) */
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } sc_stats SEC(".maps");

static __always_inline void bump(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&sc_stats, &k);
	if (v)
		*v += 1;
}

/* The tree, checked once by the verifier on its own (feature memory unknown to it). */
__noinline int sc_score(struct sc_feat *f)
{
	if (!f)
		return 0;
	return kp_map_predict(f->x);
}

static __always_inline void send(struct sc_proc *st, __u64 id, __s32 score, __u64 now)
{
	struct sc_alert *a = bpf_ringbuf_reserve(&sc_alerts, sizeof(*a), 0);
	if (!a) {
		bump(3);
		return;
	}
	a->ts = now;
	a->cgroup = bpf_get_current_cgroup_id();
	a->pid = (__u32)id;
	a->tgid = id >> 32;
	a->count = st->count;
	a->score = score;
	for (int i = 0; i < 12; i++)
		a->feats[i] = i < SC_NFEAT ? (st->sums >> (SC_FBITS * i)) & ((1 << SC_FBITS) - 1) : 0;
	/* the last min(count, SC_CTX) calls, oldest first */
	__u32 base = st->count >= SC_CTX ? st->count : 0;
	for (int i = 0; i < SC_CTX; i++)
		a->calls[i] = st->ring_nr[(base + i) & (SC_CTX - 1)];
	bpf_get_current_comm(a->comm, sizeof(a->comm));
	bpf_ringbuf_submit(a, 0);
	bump(2);
}

SEC("raw_tp/sys_enter")
int sc_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct sc_cfg *cfg = bpf_map_lookup_elem(&sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (tgid == cfg->exclude_tgid || tgid == 0)
		return 0;
	bump(0);
	struct task_struct *task = bpf_get_current_task_btf();
	struct sc_proc *st = bpf_task_storage_get(&sc_state, task->group_leader, 0,
						  BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	long nr = ctx->args[1];
	__u32 key = nr >= 0 && nr < SC_MAXNR ? nr : 0;
	struct sc_nrinfo *in = bpf_map_lookup_elem(&sc_nrinfo, &key);
	if (!in)
		return 0;
	__u64 spread = in->spread;
	__u32 cur = in->vid + 1, m = cfg->vmod;
	if (nr < 0 || nr >= SC_MAXNR) {  /* outside the table: unknown (vocabulary id 0), rare */
		cur = 1;
		spread = 1ull << SC_FBITS;
	}
	__u32 gram = ((__u32)st->prev2 * m + st->prev1) * m + cur;
	__u32 h = (gram * 2654435761u) >> (32 - SC_GRAM_BITS);
	__u32 word = h >> 6;
	__u64 *bits = bpf_map_lookup_elem(&sc_grams, &word);
	if (bits && !(*bits & (1ull << (h & 63))))
		spread += 1;  /* novel 3-gram: feature 0 */
	__u32 pos = st->count & (SC_WIN - 1);
	st->sums += spread - (st->count >= SC_WIN ? st->ring_spread[pos] : 0);
	st->ring_spread[pos] = spread;
	st->ring_nr[st->count & (SC_CTX - 1)] = nr;
	st->prev2 = st->prev1;
	st->prev1 = cur;
	st->count++;
	if (!(st->count >= SC_WIN && (st->count & (SC_STRIDE - 1)) == 0) && nr != SC_NR_EXIT_GROUP)
		return 0;
	bump(1);
	struct sc_feat *f = bpf_map_lookup_elem(&sc_scratch, &zero);
	if (!f)
		return 0;
	for (int i = 0; i < SC_NFEAT; i++)
		f->x[i] = (st->sums >> (SC_FBITS * i)) & ((1 << SC_FBITS) - 1);
	__s32 score = sc_score(f);
	if (score <= cfg->threshold)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (now >= st->quiet_until || nr == SC_NR_EXIT_GROUP) {  /* a process's last window always goes */
		st->quiet_until = now + SC_QUIET_NS;
		send(st, id, score, now);
	}
	return 0;
}
