/* Calls kp_uprobe_target (kp_uprobe_lib.c) N times and prints the mean ns per call
 * (CLOCK_MONOTONIC around the loop only). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

long kp_uprobe_target(long n, unsigned long nbytes);

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		kp_uprobe_target(i, 64);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("%.1f\n", ns / (n ? n : 1));
	return 0;
}
