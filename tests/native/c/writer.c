/*
 * Writes watched[0..nvars-1] N times each (the value written is the iteration, 1..N).
 * Prints the address of watched[0] (the others follow at +8, +16, +24), then waits for
 * one byte on stdin (EOF also starts it) so the test can arm first; prints "done N".
 *
 * usage: writer N [delay_us] [nvars] [nowait]
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
	int nvars = argc > 3 ? atoi(argv[3]) : 1;
	char go;

	printf("%p\n", (void *)&watched[0]);
	fflush(stdout);
	if (!(argc > 4 && !strcmp(argv[4], "nowait")) && read(0, &go, 1) < 0)
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
