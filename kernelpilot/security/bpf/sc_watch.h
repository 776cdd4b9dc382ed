/* The security watch's in-kernel window stage (see sc_watch.bpf.c), for one sys_enter program:
 * sc_watch.bpf.c's own, or kp_trace.bpf.c's built with KP_WITH_SECURITY (the agent's one sensor,
 * where the same program also batches the trace event). The includer defines
 * sc_arg(ctx, i): system call argument i (0..3) of the sys_enter context. */
#ifndef SC_WATCH_H
#define SC_WATCH_H
#include "kp_tree_map.h"

static __always_inline __u64 sc_arg(void *ctx, int i);

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
/* A connect burst: SC_CONN_BURST TCP connects by one thread to one address and port, each within
 * SC_CONN_GAP_NS of the run's first (a password guesser's shape), send one SC_EV_CONNECT. */
#define SC_CONN_BURST 16
#define SC_CONN_GAP_NS 10000000000ull

/* gen: the loaded model's generation (never 0), so a thread's memo of its last score is never
 * taken across models */
struct sc_cfg { __u32 exclude_tgid; __s32 threshold; __u32 enabled; __u32 vmod; __u32 gen; };
/* per syscall number: the packed feature increment (rare + classes), the vocabulary id, and
 * rules = 1 for the calls behaviour() looks at (SC_RULE_NRS in security/live.py: the others skip it) */
struct sc_nrinfo { __u64 spread; __u32 vid; __u32 rules; };
/* sc_event kinds */
#define SC_EV_EXEC 1        /* arg: argv's length, arg2: which of fds 0-2 are inet sockets (bits) */
#define SC_EV_EXIT 2
#define SC_EV_SHADOW 3
#define SC_EV_SERVER 4
#define SC_EV_SETID 5
#define SC_EV_SETID_FILE 6
#define SC_EV_RENAME 7
#define SC_EV_FORK 8
#define SC_EV_CONNECT 9     /* arg: port, arg2: the burst's seconds in ns */
#define SC_PROC_SERVER 1    /* sc_proc.flags: this thread's listen/accept on inet was sent */
struct sc_proc {
	__u64 sums;                 /* SC_NFEAT fields of SC_FBITS bits */
	__u64 quiet_until;          /* ktime: bounds what one process (a flood) can send up */
	__u32 count;
	__u16 prev1, prev2;         /* vocabulary id + 1 of the last two calls, 0 = none */
	__u32 writes;               /* write-family calls so far (the rename-storm rule) */
	__u32 flags;
	__u32 conn_n;               /* connects in the current run to conn_dest (connect burst) */
	__u64 conn_dest, conn_since;
	__u64 memo_sums;            /* the last window scored (its packed features) and its score: */
	__s32 memo_score;           /* a window equal to it is not scored again (the tree is a */
	__u32 memo_gen;             /* function of the features alone); valid for model memo_gen */
	__u64 ring_spread[SC_WIN];  /* what each call in the window added to sums */
	__u16 ring_nr[SC_CTX];
};
struct sc_alert { __u64 ts; __u64 cgroup; __u32 pid, tgid; __u32 count; __s32 score; __u16 feats[12];
		  __u16 calls[SC_CTX]; char comm[16]; };
struct sc_feat { __s32 x[KP_MAX_FEATURES]; };
struct sc_event { __u64 ts; __u64 cgroup; __u64 arg2; __u32 tid, tgid, ppid, uid; __u32 kind, arg;
		  char comm[16]; char path[128]; char path2[128]; char args[256]; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct sc_cfg); } sc_cfg SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, SC_MAXNR); __type(key, __u32); __type(value, struct sc_nrinfo); } sc_nrinfo SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1 << (SC_GRAM_BITS - 6)); __type(key, __u32); __type(value, __u64); } sc_grams SEC(".maps");
#ifdef SC_STATE_BY_TID
/* The agent's build where pid_max is small (SC_STATE_BY_TID = pid_max): the state in an array
 * indexed by thread id, an inlined lookup with no helper call (task storage costs two). A slot is
 * reset when a thread is created (sched_process_fork, threads too) and at exec. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, SC_STATE_BY_TID); __type(key, __u32); __type(value, struct sc_proc); } sc_state SEC(".maps");
#else
struct { __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC); __type(key, int); __type(value, struct sc_proc); } sc_state SEC(".maps");
#endif
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct sc_feat); } sc_scratch SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 20); } sc_alerts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 22); } sc_events SEC(".maps");
/* 0 syscalls seen, 1 windows scored, 2 windows sent up, 3 windows dropped (ring full),
 * 4 events sent, 5 events dropped */
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 6); __type(key, __u32); __type(value, __u64); } sc_stats SEC(".maps");

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

static __always_inline struct sc_event *event(__u32 kind, __u32 arg, __u64 arg2)
{
	struct sc_event *e = bpf_ringbuf_reserve(&sc_events, sizeof(*e), 0);
	if (!e) {
		bump(5);
		return 0;
	}
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	e->ts = bpf_ktime_get_ns();
	e->cgroup = bpf_get_current_cgroup_id();
	e->tid = (__u32)id;
	e->tgid = id >> 32;
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->kind = kind;
	e->arg = arg;
	e->arg2 = arg2;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->path[0] = e->path2[0] = e->args[0] = 0;
	return e;
}

static __always_inline void commit(struct sc_event *e)
{
	bpf_ringbuf_submit(e, 0);
	bump(4);
}

/* The current task's fd as a socket (0 if it is none: a pipe's or a tty's private_data is no socket). */
static __always_inline struct socket *fd_socket(int fd)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	bpf_probe_read_kernel(&f, sizeof(f), fds + fd);
	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & 0170000) != 0140000)  /* S_IFMT, S_IFSOCK */
		return 0;
	return (struct socket *)BPF_CORE_READ(f, private_data);
}

/* Socket family of the current task's fd, 0 if none. */
static __always_inline __u16 fd_family(int fd)
{
	struct socket *sock = fd_socket(fd);
	return sock ? BPF_CORE_READ(sock, sk, __sk_common.skc_family) : 0;
}

/* connect(fd, addr): count the thread's run of TCP connects to one address and port. */
static __always_inline void on_connect(struct sc_proc *st, int fd, __u64 uaddr)
{
	__u8 sa[24] = {};
	if (bpf_probe_read_user(sa, sizeof(sa), (void *)uaddr))
		return;
	__u16 fam = sa[0] | (sa[1] << 8);
	if (fam != 2 && fam != 10)  /* AF_INET, AF_INET6 */
		return;
	struct socket *sock = fd_socket(fd);
	if (!sock || BPF_CORE_READ(sock, type) != 1)  /* SOCK_STREAM: DNS lookups connect UDP sockets */
		return;
	__u64 port = (sa[2] << 8) | sa[3], dest = port << 48;
	if (fam == 2) {  /* the address at 4 */
		dest |= sa[4] | (sa[5] << 8) | (sa[6] << 16) | ((__u64)sa[7] << 24);
	} else {         /* IPv6: its 16 bytes at 8, folded */
		for (int i = 0; i < 16; i++)
			dest ^= (__u64)sa[8 + i] << (8 * (i & 7));
	}
	__u64 now = bpf_ktime_get_ns();
	if (dest != st->conn_dest || now - st->conn_since > SC_CONN_GAP_NS) {
		st->conn_dest = dest;
		st->conn_since = now;
		st->conn_n = 0;
	}
	if (++st->conn_n == SC_CONN_BURST) {
		struct sc_event *e = event(SC_EV_CONNECT, (__u32)port, now - st->conn_since);
		if (e)
			commit(e);
	}
}

/* Bit i: the current task's fd i (0-2) is an inet socket. At exec (the fds the new program
 * starts with, close-on-exec done): however the socket got there, a dup2 here or in a parent,
 * inherited, or an accept or socket that took a free fd 0. */
static __always_inline __u64 inet_stdio(void)
{
	__u64 bits = 0;
	for (int fd = 0; fd < 3; fd++) {
		__u16 fam = fd_family(fd);
		if (fam == 2 || fam == 10)  /* AF_INET, AF_INET6 */
			bits |= 1ull << fd;
	}
	return bits;
}

static __always_inline void path_event(__u32 kind, __u32 nr, __u64 arg2, __u64 p1, __u64 p2)
{
	struct sc_event *e = event(kind, nr, arg2);
	if (!e)
		return;
	if (p1)
		bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)p1);
	if (p2)
		bpf_probe_read_user_str(e->path2, sizeof(e->path2), (void *)p2);
	commit(e);
}

/* The rules' syscalls (x86-64 numbers); everything else returns at the switch. */
static __always_inline void behaviour(void *ctx, struct sc_proc *st, long nr)
{
	switch (nr) {
	case 1: case 18: case 20: case 296: case 328:  /* write pwrite64 writev pwritev pwritev2 */
		st->writes++;
		return;
	case 2: case 257: case 437: {  /* open openat openat2 */
		__u64 b[2] = {};
		__u64 p = sc_arg(ctx, nr == 2 ? 0 : 1);
		bpf_probe_read_user_str(b, sizeof(b), (void *)p);
		if ((b[0] == 0x6168732f6374652full && (b[1] & 0xffffffffull) == 0x776f64) ||      /* /etc/shadow */
		    (b[0] == 0x6873672f6374652full && (b[1] & 0xffffffffffull) == 0x776f6461))   /* /etc/gshadow */
			path_event(SC_EV_SHADOW, nr, 0, p, 0);
		return;
	}
	case 43: case 50: case 288: {  /* accept listen accept4 */
		if (st->flags & SC_PROC_SERVER)
			return;
		__u16 fam = fd_family((int)sc_arg(ctx, 0));
		if (fam == 2 || fam == 10) {  /* AF_INET, AF_INET6 */
			st->flags |= SC_PROC_SERVER;
			struct sc_event *e = event(SC_EV_SERVER, nr, fam);
			if (e)
				commit(e);
		}
		return;
	}
	case 42:  /* connect */
		on_connect(st, (int)sc_arg(ctx, 0), sc_arg(ctx, 1));
		return;
	case 105: case 106: case 113: case 114: case 117: case 119: case 122: case 123: {
		/* setuid..setfsgid: only a call that asks for an id other than the real one (make and
		 * many daemons set the ids they already have) */
		__u64 ug = bpf_get_current_uid_gid();
		int gid = nr == 106 || nr == 114 || nr == 119 || nr == 123;
		__u32 cur = gid ? ug >> 32 : (__u32)ug, n = nr == 113 || nr == 114 ? 2 : nr == 117 || nr == 119 ? 3 : 1;
		for (int i = 0; i < 3; i++) {
			__u32 v = (__u32)sc_arg(ctx, i);
			if (i < n && v != 0xffffffffu && v != cur) {
				struct sc_event *e = event(SC_EV_SETID, nr, v);
				if (e)
					commit(e);
				return;
			}
		}
		return;
	}
	case 126: {  /* capset */
		struct sc_event *e = event(SC_EV_SETID, nr, 0);
		if (e)
			commit(e);
		return;
	}
	case 90: case 91: case 268: case 452: {  /* chmod fchmod fchmodat fchmodat2 */
		__u64 mode = sc_arg(ctx, nr == 90 || nr == 91 ? 1 : 2);
		if (mode & 06000)
			path_event(SC_EV_SETID_FILE, nr, mode, nr == 91 ? 0 : sc_arg(ctx, nr == 90 ? 0 : 1), 0);
		return;
	}
	case 188: case 189: case 190: {  /* setxattr lsetxattr fsetxattr: security.capability is setcap */
		__u64 b[3] = {};
		bpf_probe_read_user_str(b, sizeof(b), (void *)sc_arg(ctx, 1));
		if (b[0] == 0x7974697275636573ull && b[1] == 0x6c6962617061632eull && (b[2] & 0xffffffffull) == 0x797469)
			path_event(SC_EV_SETID_FILE, nr, 0, nr == 190 ? 0 : sc_arg(ctx, 0), 0);
		return;
	}
	case 82:  /* rename */
		path_event(SC_EV_RENAME, nr, st->writes, sc_arg(ctx, 0), sc_arg(ctx, 1));
		return;
	case 264: case 316:  /* renameat renameat2 */
		path_event(SC_EV_RENAME, nr, st->writes, sc_arg(ctx, 1), sc_arg(ctx, 3));
		return;
	}
}

/* The current thread's state (created empty on first use). */
static __always_inline struct sc_proc *sc_state_of_current(__u64 id)
{
#ifdef SC_STATE_BY_TID
	__u32 tid = (__u32)id;
	return bpf_map_lookup_elem(&sc_state, &tid);
#else
	return bpf_task_storage_get(&sc_state, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
#endif
}

static __always_inline void sc_state_reset(struct task_struct *p)
{
#ifdef SC_STATE_BY_TID
	__u32 tid = p->pid;
	struct sc_proc *st = bpf_map_lookup_elem(&sc_state, &tid);
	if (st)
		__builtin_memset(st, 0, sizeof(*st));
#else
	bpf_task_storage_delete(&sc_state, p);
#endif
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sc_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct sc_cfg *cfg = bpf_map_lookup_elem(&sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return 0;
	struct sc_event *e = event(SC_EV_EXEC, 0, 0);
	if (!e)
		return 0;
	bpf_probe_read_kernel_str(e->path, sizeof(e->path), BPF_CORE_READ(bprm, filename));
	const char *interp = BPF_CORE_READ(bprm, interp);
	if (interp != BPF_CORE_READ(bprm, filename))
		bpf_probe_read_kernel_str(e->path2, sizeof(e->path2), interp);
	__u64 a = BPF_CORE_READ(p, mm, arg_start), z = BPF_CORE_READ(p, mm, arg_end);
	__u64 n = z > a ? z - a : 0;
	if (n > sizeof(e->args) - 1)
		n = sizeof(e->args) - 1;
	if (n)
		bpf_probe_read_user(e->args, n & 0xff, (void *)a);
	e->args[n & 0xff] = 0;
	e->arg = n;  /* argv's length: the ring slot is not zeroed, bytes after it are stale */
	e->arg2 = inet_stdio();
	commit(e);
	sc_state_reset(p);  /* the new program's windows start empty */
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sc_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 zero = 0;
	sc_state_reset(child);
	struct sc_cfg *cfg = bpf_map_lookup_elem(&sc_cfg, &zero);
	if (!cfg || !cfg->enabled || child->pid != child->tgid)  /* new processes, not threads */
		return 0;
	struct sc_event *e = event(SC_EV_FORK, child->tgid, 0);
	if (e)
		commit(e);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sc_exit, struct task_struct *p)
{
	__u32 zero = 0;
	struct sc_cfg *cfg = bpf_map_lookup_elem(&sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id != id >> 32)  /* threads: only the leader's exit ends a process */
		return 0;
	struct sc_event *e = event(SC_EV_EXIT, 0, 0);
	if (e)
		commit(e);
	return 0;
}

/* One system call `nr` of the current thread (`id` = bpf_get_current_pid_tgid()). */
static __always_inline void sc_on_syscall(void *ctx, long nr, __u64 id)
{
	__u32 zero = 0;
	struct sc_cfg *cfg = bpf_map_lookup_elem(&sc_cfg, &zero);
	if (!cfg || !cfg->enabled)
		return;
	__u32 tgid = id >> 32;
	if (tgid == cfg->exclude_tgid || tgid == 0)
		return;
	bump(0);
	struct sc_proc *st = sc_state_of_current(id);
	if (!st)
		return;
	__u32 key = nr >= 0 && nr < SC_MAXNR ? nr : 0;
	struct sc_nrinfo *in = bpf_map_lookup_elem(&sc_nrinfo, &key);
	if (!in)
		return;
	if (in->rules)
		behaviour(ctx, st, nr);
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
		return;
	bump(1);
	__s32 score = st->memo_score;
	if (st->memo_sums != st->sums || st->memo_gen != cfg->gen) {
		struct sc_feat *f = bpf_map_lookup_elem(&sc_scratch, &zero);
		if (!f)
			return;
		for (int i = 0; i < SC_NFEAT; i++)
			f->x[i] = (st->sums >> (SC_FBITS * i)) & ((1 << SC_FBITS) - 1);
		score = sc_score(f);
		st->memo_sums = st->sums;
		st->memo_score = score;
		st->memo_gen = cfg->gen;
	}
	if (score <= cfg->threshold)
		return;
	__u64 now = bpf_ktime_get_ns();
	if (now >= st->quiet_until || nr == SC_NR_EXIT_GROUP) {  /* a process's last window always goes */
		st->quiet_until = now + SC_QUIET_NS;
		send(st, id, score, now);
	}
}

#endif
