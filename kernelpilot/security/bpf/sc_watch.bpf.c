// SPDX-License-Identifier: GPL-2.0
/* In-kernel first stage of `kpilot security watch`.
 *
 * Per thread (state in task storage on the thread, so threads of one process never interleave
 * in one window) a sliding window of the last SC_WIN syscalls. Each call adds its feature bits to packed running sums and removes those of
 * the call leaving the window (two adds, no loop). Features, as kernelpilot/security/features.py:
 *   0 novel 3-gram (bit in a 2^20-bit table of normal 3-grams, Fibonacci hash of vocabulary ids)
 *   1 rare call, 2..8 syscall classes (exec, net, cred, fsmod, proc, mem, fd).
 * Every SC_STRIDE calls (and at exit_group) the window is scored by the kernelize map interpreter
 * (kp_tree_map.h: the tree is data in kp_model_slots); windows over the threshold go up the ring
 * buffer with their last SC_CTX syscalls (the window and its context). Per syscall: one task-storage get, two inlined array lookups.
 *
 * Behaviour events for the rules (kernelpilot/security/rules.py) go up a second ring, sc_events:
 * exec (sched_process_exec: file, interpreter, argv, which of fds 0-2 are inet sockets), fork of a process, leader exit, an open of /etc/shadow or
 * /etc/gshadow, listen/accept on an inet socket (once per thread), setuid-family calls asking for
 * an id other than the real one, capset,
 * chmod with S_ISUID/S_ISGID, setxattr of security.capability, and renames (with the thread's
 * write count). Only these syscalls read their arguments.
 *
 * The stage itself is sc_watch.h; the agent runs it inside kp_trace.bpf.c's sys_enter program
 * (built with KP_WITH_SECURITY), this object on a sys_enter program of its own. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sc_watch.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u64 sc_arg(void *ctx, int i)
{
	struct pt_regs *r = (struct pt_regs *)((struct bpf_raw_tracepoint_args *)ctx)->args[0];
	__u64 v = 0;
	switch (i) {  /* x86-64 syscall argument registers */
	case 0: bpf_probe_read_kernel(&v, 8, &r->di); break;
	case 1: bpf_probe_read_kernel(&v, 8, &r->si); break;
	case 2: bpf_probe_read_kernel(&v, 8, &r->dx); break;
	case 3: bpf_probe_read_kernel(&v, 8, &r->r10); break;
	}
	return v;
}

SEC("raw_tp/sys_enter")
int sc_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	sc_on_syscall(ctx, ctx->args[1], bpf_get_current_pid_tgid());
	return 0;
}
