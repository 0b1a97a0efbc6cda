/*
 * Writes watched[0..NVARS-1] N times each (the value written is the iteration, 1..N),
 * DELAY_US apart. Prints the address of watched[0] (the others follow at +8, +16, +24),
 * then waits for one byte on stdin (EOF also starts it) so the test can arm first;
 * prints "done N".
 *
 * usage: writer N [DELAY_US [NVARS]] [nowait]
 * The numbers are positional; "nowait", wherever it comes after N, starts the writes
 * at once (for a launched program, whose stdin is not the test's).
 */
#include "trap_report.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_VARS 4

volatile unsigned long watched[MAX_VARS] __attribute__((aligned(64)));

int main(int argc, char **argv)
{
	unsigned long num[3] = {10000, 0, 1}; /* N, DELAY_US, NVARS */
	int given = 0, wait_go = 1;
	char go;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "nowait"))
			wait_go = 0;
		else if (given < 3)
			num[given++] = strtoul(argv[i], NULL, 0);
	}
	if (num[2] < 1 || num[2] > MAX_VARS)
		return 2;
	printf("%p\n", (void *)&watched[0]);
	fflush(stdout);
	if (wait_go && read(0, &go, 1) < 0)
		return 2;
	for (unsigned long i = 1; i <= num[0]; i++) {
		for (unsigned long v = 0; v < num[2]; v++)
			watched[v] = i;
		if (num[1])
			usleep(num[1]);
	}
	printf("done %lu\n", watched[0]);
	return 0;
}
