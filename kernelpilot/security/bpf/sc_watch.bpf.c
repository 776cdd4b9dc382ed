// SPDX-License-Identifier: GPL-2.0
/* In-kernel first stage of `kpilot security watch`: per process (tgid), count over tumbling windows
 * of SC_WIN syscalls the features of the kernelizable tree (novel 3-grams, rare calls, syscall
 * classes), walk the tree at each window end and send only windows scoring over the threshold up
 * the ring buffer, with the window's syscalls. Cost per syscall: 2 hash lookups + a few adds. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define SC_WIN 32
#define SC_NFEAT 9
#define SC_NNODES 512
#define SC_MAXNR 512
#define SC_RARE (1u << 7)

struct sc_cfg { __u32 exclude_tgid; __u32 threshold; __u32 enabled; __u32 pad; };
struct sc_tnode { __s32 feature; __s32 left; __s32 right; __u32 thr; __u32 value; __u32 pad; };
struct sc_proc { __u16 prev1, prev2; __u32 count; __u16 feats[SC_NFEAT]; __u16 ring[SC_WIN]; };
struct sc_alert { __u64 ts; __u32 pid, tgid; __u32 score; __u32 nfeat; __u16 feats[SC_NFEAT + 1];
                  __u16 calls[SC_WIN]; char comm[16]; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct sc_cfg); } sc_cfg SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, SC_MAXNR); __type(key, __u32); __type(value, __u32); } sc_flags SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536); __type(key, __u32); __type(value, __u8); } sc_grams SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, SC_NNODES); __type(key, __u32); __type(value, struct sc_tnode); } sc_tree SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 16384); __type(key, __u32); __type(value, struct sc_proc); } sc_state SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } sc_alerts SEC(".maps");
/* 0 syscalls seen, 1 windows scored, 2 windows sent up, 3 windows dropped (ring full) */
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } sc_stats SEC(".maps");

static __always_inline void bump(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&sc_stats, &k);
	if (v)
		*v += 1;
}

static __always_inline __u32 tree_score(struct sc_proc *st)
{
	__s32 k = 0;
	for (int depth = 0; depth < 10; depth++) {
		__u32 key = k;
		struct sc_tnode *n = bpf_map_lookup_elem(&sc_tree, &key);
		if (!n)
			return 0;
		if (n->left < 0)
			return n->value;
		__u32 f = n->feature;
		if (f >= SC_NFEAT)
			return 0;
		k = st->feats[f] <= n->thr ? n->left : n->right;
	}
	return 0;
}

SEC("tp/raw_syscalls/sys_enter")
int sc_sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 zero = 0;
	struct sc_cfg *cfg = bpf_map_lookup_elem(&sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (tgid == cfg->exclude_tgid || tgid == 0)
		return 0;
	long nr = ctx->id;
	if (nr < 0 || nr >= SC_MAXNR)
		return 0;
	bump(0);
	struct sc_proc *st = bpf_map_lookup_elem(&sc_state, &tgid);
	if (!st) {
		struct sc_proc fresh = {};
		bpf_map_update_elem(&sc_state, &tgid, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&sc_state, &tgid);
		if (!st)
			return 0;
	}
	__u32 key = nr;
	__u32 *fl = bpf_map_lookup_elem(&sc_flags, &key);
	__u32 flags = fl ? *fl : SC_RARE;
	__u32 gram = ((__u32)st->prev2 << 20) | ((__u32)st->prev1 << 10) | (__u32)(nr + 1);
	if (!bpf_map_lookup_elem(&sc_grams, &gram))
		st->feats[0]++;
	if (flags & SC_RARE)
		st->feats[1]++;
	for (int c = 0; c < SC_NFEAT - 2; c++)
		if (flags & (1u << c))
			st->feats[2 + c]++;
	st->ring[st->count & (SC_WIN - 1)] = nr;
	st->prev2 = st->prev1;
	st->prev1 = nr + 1;
	st->count++;
	if (st->count < SC_WIN)
		return 0;
	bump(1);
	__u32 score = tree_score(st);
	if (score >= cfg->threshold) {
		struct sc_alert *a = bpf_ringbuf_reserve(&sc_alerts, sizeof(*a), 0);
		if (a) {
			a->ts = bpf_ktime_get_ns();
			a->pid = (__u32)id;
			a->tgid = tgid;
			a->score = score;
			a->nfeat = SC_NFEAT;
			for (int i = 0; i < SC_NFEAT; i++)
				a->feats[i] = st->feats[i];
			a->feats[SC_NFEAT] = 0;
			for (int i = 0; i < SC_WIN; i++)
				a->calls[i] = st->ring[i];
			bpf_get_current_comm(a->comm, sizeof(a->comm));
			bpf_ringbuf_submit(a, 0);
			bump(2);
		} else {
			bump(3);
		}
	}
	st->count = 0;
	for (int i = 0; i < SC_NFEAT; i++)
		st->feats[i] = 0;
	return 0;
}
