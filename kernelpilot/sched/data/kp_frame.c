/* An interactive "frame" loop: every 16.7 ms (60 Hz) wake, do WORK_US of CPU work, and count the
 * frames not finished by their deadline (the next frame's start). Frames in the first WARM
 * seconds are not counted.  kp_frame SECONDS WORK_US [WARM_S [PERIOD_US]]  -> one JSON line. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long ns(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static int cmp(const void *a, const void *b) { long long x = *(long long *)a, y = *(long long *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: kp_frame SECONDS WORK_US [WARM_S [PERIOD_US]]\n"); return 2; }
    double secs = atof(argv[1]), warm = argc > 3 ? atof(argv[3]) : 0;
    long long work = atoll(argv[2]) * 1000LL, period = (argc > 4 ? atoll(argv[4]) : 16667) * 1000LL;
    long long n_max = (long long)((secs + warm) * 1e9 / period) + 2, frames = 0, missed = 0, k = 0;
    long long *wake = calloc(n_max, sizeof *wake), nw = 0;
    long long start = ns(CLOCK_MONOTONIC), counted_from = start + (long long)(warm * 1e9);
    long long end = counted_from + (long long)(secs * 1e9);
    volatile unsigned long long sink = 0;
    for (;;) {
        long long due = start + k * period;
        if (due >= end) break;
        struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        long long woke = ns(CLOCK_MONOTONIC), cpu0 = ns(CLOCK_THREAD_CPUTIME_ID);
        while (ns(CLOCK_THREAD_CPUTIME_ID) - cpu0 < work) for (int i = 0; i < 200; i++) sink += i * k;
        long long done = ns(CLOCK_MONOTONIC);
        long long next = k + 1;
        if (done > due + period) next = (done - start) / period + 1;  /* frames skipped: missed too */
        if (due >= counted_from) {
            frames += next - k;
            if (done > due + period) missed += next - k;
            if (nw < n_max) wake[nw++] = woke - due;
        }
        k = next;
    }
    qsort(wake, nw, sizeof *wake, cmp);
    printf("{\"frames\": %lld, \"missed\": %lld, \"wake_p50_us\": %.1f, \"wake_p99_us\": %.1f}\n", frames, missed,
           nw ? wake[nw / 2] / 1e3 : 0.0, nw ? wake[(long long)(nw * 0.99)] / 1e3 : 0.0);
    return 0;
}
