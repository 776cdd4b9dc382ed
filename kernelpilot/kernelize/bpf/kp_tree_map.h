/* SPDX-License-Identifier: GPL-2.0 */
/* kernelpilot map-encoded tree interpreter: a tree ensemble kept in a BPF array map, walked with
 * bounded loops. Two model slots plus an active-slot index: a deploy writes the idle slot, then
 * flips the index (one 4-byte store), so readers see either the old or the new model, whole.
 * Include after vmlinux.h and bpf_helpers.h; call kp_map_predict(x) with KP_MAX_FEATURES int32s. */
#ifndef KP_TREE_MAP_H
#define KP_TREE_MAP_H

#ifndef KP_MAX_FEATURES
#define KP_MAX_FEATURES 32
#endif
#define KP_MAP_MAX_NODES 8192
#define KP_MAP_MAX_TREES 64
#define KP_MAP_MAX_DEPTH 16

enum { KP_OUT_LABEL = 0, KP_OUT_SCORE = 1, KP_OUT_BINARY = 2 };

struct kp_mnode {
	__s32 feat;  /* feature index, -1 at a leaf */
	__s32 val;   /* threshold (go left when x <= val), or the leaf value */
	__u32 left;
	__u32 right;
};

struct kp_mslot {
	__u32 n_trees;
	__u32 output;
	__s32 bias;
	__s32 thr;
	__u32 roots[KP_MAP_MAX_TREES];
	struct kp_mnode nodes[KP_MAP_MAX_NODES];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct kp_mslot);
} kp_model_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} kp_model_active SEC(".maps");

static __always_inline __s32 kp_map_predict(const __s32 *x)
{
	__u32 zero = 0;
	__u32 *act = bpf_map_lookup_elem(&kp_model_active, &zero);
	if (!act)
		return 0;
	__u32 s = *act & 1;
	struct kp_mslot *m = bpf_map_lookup_elem(&kp_model_slots, &s);
	if (!m)
		return 0;
	__s32 sum = m->bias, last = 0;
	__u32 nt = m->n_trees;
#pragma clang loop unroll(disable)
	for (__u32 t = 0; t < KP_MAP_MAX_TREES; t++) {
		if (t >= nt)
			break;
		__u32 i = m->roots[t];
#pragma clang loop unroll(disable)
		for (int d = 0; d <= KP_MAP_MAX_DEPTH; d++) {
			struct kp_mnode *n = &m->nodes[i & (KP_MAP_MAX_NODES - 1)];
			if (n->feat < 0) {
				last = n->val;
				break;
			}
			i = x[n->feat & (KP_MAX_FEATURES - 1)] <= n->val ? n->left : n->right;
		}
		sum += last;
	}
	if (m->output == KP_OUT_LABEL)
		return last;
	if (m->output == KP_OUT_BINARY)
		return sum > m->thr;
	return sum;
}

#endif
