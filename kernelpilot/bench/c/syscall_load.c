/* Syscall load generator for `kpilot bench ingest`: N getppid() calls, as fast as possible or
 * paced to RATE calls/s. Prints: calls elapsed_ns ns_per_call */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long long n = argc > 1 ? atoll(argv[1]) : 1000000;
	double rate = argc > 2 ? atof(argv[2]) : 0;
	long long t0 = now_ns();
	if (rate <= 0) {
		for (long long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else {
		double gap = 1e9 / rate;
		for (long long i = 0; i < n; i++) {
			while (now_ns() - t0 < (long long)(i * gap))
				;
			syscall(SYS_getppid);
		}
	}
	long long dt = now_ns() - t0;
	printf("%lld %lld %.2f\n", n, dt, (double)dt / n);
	return 0;
}
