/* Records of the aipath probe (ap_probe.bpf.c), mirrored by kernelpilot/aipath/probe.py. */
#ifndef AP_PROBE_H
#define AP_PROBE_H

#define AP_ARG_BYTES 32
#define AP_MARK_MAGIC 0x4B50494C4F54ULL /* "KPILOT": kernelpilot.aipath.markers */

/* One ioctl on a character device, sent up at its return. */
struct ap_ioctl {
	__u64 ts;       /* entry, bpf_ktime_get_ns */
	__u64 dur_ns;   /* entry to return */
	__u32 pid;
	__u32 tgid;
	__u32 cmd;
	__s32 fd;
	__u64 rdev;     /* kernel dev_t of the file's inode */
	__u64 ino;
	__s64 ret;
	__u32 mode;     /* i_mode: character or block device */
	__u32 _pad;
	__u8 arg[AP_ARG_BYTES]; /* first bytes the argument points to (devices in ap_copy only) */
};

/* Per (probed function, phase): what the calls did. The uprobe's cookie holds the function's
 * index (bits 0-15) and where its byte count is: argument i + 1 in bits 16-23 (0: none), times
 * argument j + 1 in bits 24-31 (calloc). */
struct ap_ukey {
	__u32 func;
	__u32 phase;
};

struct ap_ustat {
	__u64 calls;    /* entries */
	__u64 returns;  /* returns seen (uretprobe) */
	__u64 bytes;
	__u64 ns;       /* time inside, summed over returns */
};

struct ap_ustart {
	__u64 ts;
	__u64 bytes;
	__u32 phase;
	__u32 _pad;
};

#endif
