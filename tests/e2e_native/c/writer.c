/*
 * Writes watched[0] N times (the value written is the iteration, 1..N), DELAY_US apart
 * (0: as fast as it can); with NVARS (1 to 4), each iteration writes watched[0] to
 * watched[NVARS - 1], 8 bytes apart. Prints the address of `watched`, then waits for
 * one byte on stdin (EOF also starts it) unless the third argument is "nowait" (any
 * other word waits); prints "done N" at the end.
 *
 * usage: writer N [delay_us] [nowait|go] [nvars]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long watched[4] __attribute__((aligned(64)));

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000;
	unsigned long delay = argc > 2 ? strtoul(argv[2], NULL, 0) : 0;
	int nvars = argc > 4 ? atoi(argv[4]) : 1;
	char go;

	if (nvars < 1 || nvars > 4)
		return 2;
	printf("%p\n", (void *)&watched[0]);
	fflush(stdout);
	if (!(argc > 3 && !strcmp(argv[3], "nowait")) && read(0, &go, 1) < 0)
		return 2;
	for (unsigned long i = 1; i <= n; i++) {
		for (int v = 0; v < nvars; v++)
			watched[v] = i;
		if (delay)
			usleep(delay);
	}
	printf("done %lu\n", watched[0]);
	return 0;
}
