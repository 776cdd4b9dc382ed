// SPDX-License-Identifier: GPL-2.0
/* In-kernel latency-critical vs batch classifier. Per-task counters (run, wait, slices,
 * voluntary and involuntary switches) are kept in kp_sc_tasks from sched_switch/sched_wakeup;
 * when a task's window ends (at its switch-out), the integer class features are computed
 * exactly as kernelpilot.sched.features.class_features_int does, the tree in kp_model_slots
 * (kernelize's map interpreter) classifies it, and the verdict goes to kp_sc_verdicts for the
 * live agent. The kernelize harness programs (kp_infer_xdp) come along for parity tests. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kp_tree_map.h"

char LICENSE[] SEC("license") = "GPL";

#define KP_PREDICT kp_map_predict
#include "kp_harness.h"

#define KP_SC_NF 5

struct kp_sc_ctr {
	__u64 win_start, on_at, ready_at;
	__u64 run, wait, slices, vol, invol;
};

struct kp_sc_verdict {
	__s32 cls;
	__u32 tgid;
	__u64 seq;     /* windows classified so far */
	__u64 ts;      /* end of the window (ktime ns) */
	__u64 run, wait, slices, vol, invol, span;  /* the window's counters */
	__s32 x[KP_SC_NF];                          /* the features the tree saw */
	__u32 pad;
};

struct kp_sc_cfg {
	__u64 window_ns;
	__u32 enabled;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct kp_sc_ctr);
} kp_sc_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct kp_sc_verdict);
} kp_sc_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kp_sc_cfg);
} kp_sc_cfg SEC(".maps");

/* 16 * (floor(log2 v) + 1) + the next 4 bits of v below its top bit; 0 for v = 0. */
static __always_inline __s32 kp_log2q4(__u64 v)
{
	if (!v)
		return 0;
	__u32 msb = 0;
	__u64 t = v;
	if (t >> 32) { t >>= 32; msb += 32; }
	if (t >> 16) { t >>= 16; msb += 16; }
	if (t >> 8) { t >>= 8; msb += 8; }
	if (t >> 4) { t >>= 4; msb += 4; }
	if (t >> 2) { t >>= 2; msb += 2; }
	if (t >> 1) { msb += 1; }
	__u64 frac = msb >= 4 ? (v >> (msb - 4)) & 15 : (v << (4 - msb)) & 15;
	return (__s32)(16 * (msb + 1) + frac);
}

static __always_inline __s32 kp_clamp(__u64 v)
{
	return v > 0x7fffffff ? 0x7fffffff : (__s32)v;
}

static __always_inline struct kp_sc_ctr *kp_sc_get(__u32 tid, __u64 now)
{
	struct kp_sc_ctr *c = bpf_map_lookup_elem(&kp_sc_tasks, &tid);
	if (c)
		return c;
	struct kp_sc_ctr z = {};
	z.win_start = now;
	bpf_map_update_elem(&kp_sc_tasks, &tid, &z, BPF_NOEXIST);
	return bpf_map_lookup_elem(&kp_sc_tasks, &tid);
}

static __always_inline void kp_sc_classify(__u32 tid, __u32 tgid, struct kp_sc_ctr *c, __u64 now)
{
	__u32 zero = 0;
	struct kp_feat *f = bpf_map_lookup_elem(&kp_scratch, &zero);
	if (!f)
		return;
	__u64 span = now - c->win_start;
	if (!span)
		span = 1;
	__u64 vol1 = c->vol ? c->vol : 1, sl1 = c->slices ? c->slices : 1;
	__s32 *x = f->x;
	x[0] = kp_clamp(c->run * 1024 / span);
	x[1] = kp_clamp(c->vol * 1000000000ULL / span);
	x[2] = kp_clamp(c->invol * 1000000000ULL / span);
	x[3] = kp_log2q4(c->run / vol1 / 1000);
	x[4] = kp_log2q4(c->wait / sl1 / 1000);
#pragma clang loop unroll(full)
	for (int i = KP_SC_NF; i < KP_MAX_FEATURES; i++)
		x[i] = 0;
	__s32 cls = kp_predict_feat(f);
	struct kp_sc_verdict *old = bpf_map_lookup_elem(&kp_sc_verdicts, &tid);
	struct kp_sc_verdict v = {};
	v.cls = cls;
	v.tgid = tgid;
	v.seq = old ? old->seq + 1 : 1;
	v.ts = now;
	v.run = c->run; v.wait = c->wait; v.slices = c->slices;
	v.vol = c->vol; v.invol = c->invol; v.span = span;
#pragma clang loop unroll(full)
	for (int i = 0; i < KP_SC_NF; i++)
		v.x[i] = x[i];
	bpf_map_update_elem(&kp_sc_verdicts, &tid, &v, BPF_ANY);
	c->win_start = now;
	c->run = c->wait = c->slices = c->vol = c->invol = 0;
}

SEC("raw_tp/sched_switch")
int kp_sc_switch(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct kp_sc_cfg *cfg = bpf_map_lookup_elem(&kp_sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return 0;
	bool preempt = (bool)ctx->args[0];
	struct task_struct *prev = (void *)ctx->args[1], *next = (void *)ctx->args[2];
	__u64 state = ctx->args[3];
	__u32 ptid = BPF_CORE_READ(prev, pid), ntid = BPF_CORE_READ(next, pid);
	__u64 now = bpf_ktime_get_ns();
	if (ptid) {
		struct kp_sc_ctr *c = kp_sc_get(ptid, now);
		if (c) {
			if (c->on_at) {
				c->run += now - c->on_at;
				c->on_at = 0;
			}
			if (preempt || !state) {
				c->invol++;
				c->ready_at = now;
			} else {
				c->vol++;
			}
			if (now - c->win_start >= cfg->window_ns)
				kp_sc_classify(ptid, BPF_CORE_READ(prev, tgid), c, now);
		}
	}
	if (ntid) {
		struct kp_sc_ctr *c = kp_sc_get(ntid, now);
		if (c) {
			c->on_at = now;
			c->slices++;
			if (c->ready_at) {
				c->wait += now - c->ready_at;
				c->ready_at = 0;
			}
		}
	}
	return 0;
}

static __always_inline int kp_sc_wake(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct kp_sc_cfg *cfg = bpf_map_lookup_elem(&kp_sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return 0;
	struct task_struct *p = (void *)ctx->args[0];
	__u32 tid = BPF_CORE_READ(p, pid);
	__u64 now = bpf_ktime_get_ns();
	struct kp_sc_ctr *c = kp_sc_get(tid, now);
	if (c && !c->on_at)
		c->ready_at = now;
	return 0;
}

SEC("raw_tp/sched_wakeup")
int kp_sc_wakeup(struct bpf_raw_tracepoint_args *ctx) { return kp_sc_wake(ctx); }

SEC("raw_tp/sched_wakeup_new")
int kp_sc_wakeup_new(struct bpf_raw_tracepoint_args *ctx) { return kp_sc_wake(ctx); }
