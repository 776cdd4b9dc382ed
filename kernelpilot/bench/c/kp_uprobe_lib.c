/* The function kpilot bench aipath probes: a few instructions, never inlined. */
static volatile long kp_sink;

__attribute__((noipa)) long kp_uprobe_target(long n, unsigned long nbytes)
{
	kp_sink += n + (long)nbytes;
	return kp_sink;
}
