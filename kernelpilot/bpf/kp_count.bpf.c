// SPDX-License-Identifier: GPL-2.0
/* The cheapest useful probe: count sys_enter per CPU. A reference point for ingest costs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kp_count SEC(".maps");

SEC("tp/raw_syscalls/sys_enter")
int kp_count_sys_enter(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&kp_count, &k);
	if (v)
		*v += 1;
	return 0;
}
