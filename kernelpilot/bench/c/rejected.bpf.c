// A program the verifier rejects (it reads past the end of a map value): bench agent's faults part
// puts it in place of the security domain's objects to check that the other domains keep running.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kpb_small SEC(".maps");

SEC("tp/raw_syscalls/sys_enter")
int kpb_reads_out_of_bounds(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&kpb_small, &k);
	if (!v)
		return 0;
	return *(v + 4);
}
