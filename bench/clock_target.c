/*
 * Latency and HALT round-trip target: writes its own CLOCK_MONOTONIC time (ns) into an
 * 8-byte watched variable RATE times per second, N times, so each hit's value is the
 * moment of its own access.
 *
 * Right after each write it reads the clock again: the difference is how long the
 * thread was kept from its next instruction (the trap, the tracer's handling and, for a
 * HALT watch, the client's resume). Those stalls are printed at the end.
 *
 * Prints the variable's address in hex on the first line, then waits for one byte on
 * stdin (EOF also starts it) so a tracer can arm a watch first. At the end it prints
 * one JSON line: {"writes": N, "seconds": S, "stall_ns": [...]}.
 *
 * usage: clock_target N RATE
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile uint64_t watched;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 1000;
	unsigned long rate = argc > 2 ? strtoul(argv[2], NULL, 0) : 1000;
	uint64_t *stall = calloc(n ? n : 1, sizeof(*stall));
	struct timespec next;
	char go;

	if (!stall || !rate)
		return 2;
	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	long period = 1000000000L / (long)rate;
	uint64_t start = now_ns();
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (unsigned long i = 0; i < n; i++) {
		next.tv_nsec += period;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		uint64_t t = now_ns();
		watched = t;
		/* The volatile store happens before this call: the call may read `watched`. */
		stall[i] = now_ns() - t;
	}
	printf("{\"writes\": %lu, \"seconds\": %.6f, \"stall_ns\": [", n, (now_ns() - start) / 1e9);
	for (unsigned long i = 0; i < n; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)stall[i]);
	printf("]}\n");
	return 0;
}
