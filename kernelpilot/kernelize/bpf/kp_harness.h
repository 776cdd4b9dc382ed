/* SPDX-License-Identifier: GPL-2.0 */
/* Programs around one inference function KP_PREDICT(const __s32 *x):
 *  - kp_infer_xdp: BPF_PROG_TEST_RUN harness; packet = [s32 result][KP_MAX_FEATURES x s32];
 *    the result is written back into the packet (parity) and repeat gives ns per inference;
 *  - kp_empty_xdp: the same harness without the model (its cost is subtracted);
 *  - kp_infer_tp: attachable at raw_syscalls/sys_enter for the process kp_cfg selects,
 *    features x[0] = syscall id, x[1..6] = args (low 32 bits); counts decisions in kp_out. */
#ifndef KP_HARNESS_H
#define KP_HARNESS_H

#ifndef KP_MAX_FEATURES
#define KP_MAX_FEATURES 32
#endif
#define KP_PKT_BYTES (4 * (KP_MAX_FEATURES + 1))

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);  /* tgid to watch */
} kp_cfg SEC(".maps");

struct kp_counts {
	__u64 runs;
	__u64 positive;  /* decisions != 0 */
	__s64 last;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kp_counts);
} kp_out SEC(".maps");

struct kp_feat {
	__s32 x[KP_MAX_FEATURES];
};

/* Feature vectors live in memory whose contents the verifier does not track (the packet, a
 * per-CPU map), so what one tree learned about x[i] does not split the paths of the next. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kp_feat);
} kp_scratch SEC(".maps");

/* The model runs in one global function: the verifier checks it once, on its own, with the
 * feature memory unknown, and every program below calls this same code. */
__noinline int kp_predict_feat(struct kp_feat *f)
{
	if (!f)
		return 0;
	return KP_PREDICT(f->x);
}

/* The packet: [s32 result][KP_MAX_FEATURES x s32]; returns its start, or NULL when short. */
static __always_inline __s32 *kp_packet(struct xdp_md *ctx)
{
	__s32 *p = (__s32 *)(long)ctx->data;
	if ((void *)(p + KP_MAX_FEATURES + 1) > (void *)(long)ctx->data_end)
		return 0;
	return p;
}

SEC("xdp")
int kp_infer_xdp(struct xdp_md *ctx)
{
	__s32 *p = kp_packet(ctx);
	if (!p)
		return XDP_ABORTED;
	p[0] = kp_predict_feat((struct kp_feat *)(p + 1));
	return XDP_PASS;
}

SEC("xdp")
int kp_empty_xdp(struct xdp_md *ctx)
{
	__s32 *p = kp_packet(ctx);
	if (!p)
		return XDP_ABORTED;
	p[0] = p[1];
	return XDP_PASS;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int kp_infer_tp(struct trace_event_raw_sys_enter *ctx)
{
	__u32 zero = 0;
	__u32 *want = bpf_map_lookup_elem(&kp_cfg, &zero);
	if (!want || *want != (__u32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	struct kp_feat *f = bpf_map_lookup_elem(&kp_scratch, &zero);
	if (!f)
		return 0;
	__s32 *x = f->x;
	x[0] = (__s32)ctx->id;
	x[1] = (__s32)ctx->args[0];
	x[2] = (__s32)ctx->args[1];
	x[3] = (__s32)ctx->args[2];
	x[4] = (__s32)ctx->args[3];
	x[5] = (__s32)ctx->args[4];
	x[6] = (__s32)ctx->args[5];
	for (int i = 7; i < KP_MAX_FEATURES; i++)
		x[i] = 0;
	__s32 r = kp_predict_feat(f);
	struct kp_counts *c = bpf_map_lookup_elem(&kp_out, &zero);
	if (c) {
		__sync_fetch_and_add(&c->runs, 1);
		if (r)
			__sync_fetch_and_add(&c->positive, 1);
		c->last = r;
	}
	return 0;
}

#endif
