/*
 * Writes 1..N into `watched` at RATE writes per second, each at its own deadline on
 * CLOCK_MONOTONIC (start + i/RATE, TIMER_ABSTIME): a steady rate, not a gap after
 * each write, so a reader that polls every period always finds the same number.
 * Prints the address of `watched`, waits for one byte on stdin, prints "done N".
 *
 * usage: paced N RATE
 */
#include "trap_report.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long watched __attribute__((aligned(64)));

int main(int argc, char **argv)
{
	struct timespec start, at;
	unsigned long n, rate;
	char go;

	if (argc != 3)
		return 2;
	n = strtoul(argv[1], NULL, 0);
	rate = strtoul(argv[2], NULL, 0);
	if (!n || !rate || rate > 1000000000UL)
		return 2;
	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (read(0, &go, 1) < 0)
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned long i = 1; i <= n; i++) {
		unsigned long long ns = (unsigned long long)start.tv_nsec + i * 1000000000ULL / rate;

		at.tv_sec = start.tv_sec + (time_t)(ns / 1000000000ULL);
		at.tv_nsec = (long)(ns % 1000000000ULL);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL))
			;
		watched = i;
	}
	printf("done %lu\n", watched);
	return 0;
}
