// SPDX-License-Identifier: GPL-2.0
/* The generic map-encoded tree interpreter with its test-run and tracepoint programs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kp_tree_map.h"

char LICENSE[] SEC("license") = "GPL";

#define KP_PREDICT kp_map_predict
#include "kp_harness.h"
