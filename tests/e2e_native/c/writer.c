/*
 * Writes `watched` N times (the value written is the iteration, 1..N), DELAY_US apart.
 * Prints its address, then waits for one byte on stdin (EOF also starts it) unless the
 * third argument is "nowait"; prints "done N" at the end.
 *
 * usage: writer N [delay_us] [nowait]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long watched __attribute__((aligned(64)));

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000;
	unsigned long delay = argc > 2 ? strtoul(argv[2], NULL, 0) : 0;
	char go;

	printf("%p\n", (void *)&watched);
	fflush(stdout);
	if (!(argc > 3 && !strcmp(argv[3], "nowait")) && read(0, &go, 1) < 0)
		return 2;
	for (unsigned long i = 1; i <= n; i++) {
		watched = i;
		if (delay)
			usleep(delay);
	}
	printf("done %lu\n", watched);
	return 0;
}
